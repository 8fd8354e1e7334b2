"""Signed audit reports: ``POST /v1/reports`` (a job), ``GET /v1/reports``,
``GET /v1/reports/{id}``, ``GET /v1/reports/{id}/pdf`` (docs/reports.md).

Roles auditor, compliance_officer and admin. A number-scoped token may only ask for, see
and download reports over its own numbers (a report of other numbers is ``404`` like a
missing one, as ``JobService.get`` answers). Every call is audited.

The runtime's ``job_service`` runs the ``report`` jobs; its ``reports`` service stores and
reads them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.errors import Forbidden, InvalidInput, NotFound
from archiver.jobs.durable import JobOwner, JobState, job_view
from archiver.reporting.gather import ReportRequest
from archiver.reporting.service import KIND
from reports.facts import Regulation

router = APIRouter(prefix="/v1", tags=["reports"])
READERS = (Role.AUDITOR, Role.COMPLIANCE_OFFICER, Role.ADMIN)
MAX_NUMBERS = 100
# A business number as the webhook's metadata names it (digits), nothing else: the numbers
# are printed on a report kept under lock for years.
PhoneNumberId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]


def _when(value: object) -> date | datetime:
    """``YYYY-MM-DD`` → a date; anything longer → a time (its zone checked later)."""
    if not isinstance(value, str):
        raise ValueError("a date (YYYY-MM-DD) or a time with a zone, as text")
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


When = Annotated[date | datetime, BeforeValidator(_when)]


class ReportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regulation: Regulation
    # Text only: a JSON number is not a Unix time, ``true`` is not a sample size, and a
    # time without a zone is not silently read as a date (midnight was).
    start: When = Field(alias="from")
    end: When = Field(alias="to", description="exclusive")
    numbers: list[PhoneNumberId] = Field(default_factory=list, max_length=MAX_NUMBERS)
    sample_size: Annotated[int, Strict()] | None = Field(default=None, ge=1, le=10_000_000)


def _iso(value: date | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput("times need a zone (e.g. 2026-01-01T00:00:00Z)",
                             code="report_period_invalid")
        return value.isoformat()
    return value.isoformat()


@router.post("/reports", status_code=202)
def create_report(
    body: ReportBody,
    request: Request,
    principal: Annotated[Principal, Depends(allow(*READERS))],
) -> dict[str, Any]:
    runtime = get_runtime(request)
    numbers = sorted(set(body.numbers))
    if principal.numbers is not None:
        if not numbers:
            numbers = sorted(principal.numbers)  # a scoped token reports on its own numbers
        elif not all(principal.sees_number(n) for n in numbers):
            raise Forbidden("this token does not cover every number asked for",
                            code="report_scope")
    params = {"regulation": body.regulation.value, "start": _iso(body.start),
              "end": _iso(body.end), "numbers": numbers, "sample_size": body.sample_size}
    ReportRequest.from_json(params)  # bad periods answer 400 now, not as a failed job
    job = runtime.job_service.submit(KIND, params, JobOwner.of(principal),
                                     numbers=numbers or None)
    runtime.audit.record(
        AuditAction.REPORT_CREATED, actor_of(principal), concerns=numbers or None,
        job_id=job.id, regulation=body.regulation.value, period=[params["start"],
                                                                  params["end"]])
    return job_view(job)


@router.get("/reports")
def list_reports(
    request: Request,
    principal: Annotated[Principal, Depends(allow(*READERS))],
) -> dict[str, Any]:
    runtime = get_runtime(request)
    jobs = runtime.job_service.list(KIND, principal)
    runtime.audit.record(AuditAction.REPORT_LISTED, actor_of(principal),
                                      count=len(jobs))
    return {"reports": [job_view(j) for j in jobs]}


@router.get("/reports/{report_id}")
def get_report(
    report_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(allow(*READERS))],
) -> dict[str, Any]:
    runtime = get_runtime(request)
    job = runtime.job_service.get(KIND, report_id, principal)
    runtime.audit.record(AuditAction.REPORT_VIEWED, actor_of(principal),
                                      concerns=job.numbers or None, job_id=job.id)
    return job_view(job)


@router.get("/reports/{report_id}/pdf")
def report_pdf(
    report_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(allow(*READERS))],
) -> Response:
    runtime = get_runtime(request)
    job = runtime.job_service.get(KIND, report_id, principal)
    if job.state is not JobState.SUCCEEDED:
        raise NotFound(f"the report is {job.state}, not ready", code="report_not_ready")
    pdf = runtime.reports.read_part(dict(job.result), "pdf")
    runtime.audit.record(AuditAction.REPORT_DOWNLOADED, actor_of(principal),
                                      concerns=job.numbers or None, job_id=job.id)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="report-{job.id}.pdf"'})
