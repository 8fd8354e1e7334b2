"""E-discovery exports and subject access (issue 11). Thin: parse, submit the ``export``
job (``archiver.export.job``), show it, stream its package.

| route | roles |
|---|---|
| ``POST /v1/cases/{id}/exports`` | admin, legal |
| ``POST /v1/subject-access`` | admin, compliance_officer |
| ``GET /v1/exports/{id}``, ``GET /v1/exports/{id}/download`` | admin, legal, compliance_officer |

Number scope: a case export only for a case the token sees (``CaseService.get``: another
number's case answers 404 ``case_not_found``, as a missing one); the job concerns the
case's numbers, and a job of numbers outside a token's scope answers 404
``job_not_found``. Subject access runs within the token's numbers. Every request is an
audit event (requests and finishes through the job, views and downloads here).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.cases import CappedBodyRoute
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.errors import InvalidInput, NotFound
from archiver.export.job import (
    ARTIFACT,
    KIND,
    ExportOptions,
    case_params,
    subject_label,
    subject_params,
)
from archiver.jobs.model import Job, JobOwner, job_view

# Bodies capped at 64 KiB and refused when a JSON key repeats (as for cases).
router = APIRouter(prefix="/v1", tags=["exports"], route_class=CappedBodyRoute)

_EXPORTERS = (Role.ADMIN, Role.LEGAL)
_SUBJECT_ACCESS = (Role.ADMIN, Role.COMPLIANCE_OFFICER)
_READERS = (Role.ADMIN, Role.LEGAL, Role.COMPLIANCE_OFFICER)
Exporter = Annotated[Principal, Depends(allow(*_EXPORTERS))]
SubjectAccess = Annotated[Principal, Depends(allow(*_SUBJECT_ACCESS))]
Reader = Annotated[Principal, Depends(allow(*_READERS))]
FORMATS = ("rsmf", "natives", "text", "loadfile", "transcripts")


class ExportBody(BaseModel):
    # Strict types: "yes", 1 or "7" are refused (422), not read as true or 7 (as for cases).
    model_config = ConfigDict(extra="forbid")

    formats: list[StrictStr] = Field(default_factory=lambda: list(FORMATS), max_length=10,
                               description="rsmf, natives, text and loadfile are always "
                               "written (the manifest proves them); transcripts optional")
    bates_prefix: str = Field(default="", max_length=20, description="[A-Za-z0-9_-]")
    bates_start: StrictInt = Field(default=1, description="first number of a case without any")
    include_media: StrictBool = True
    include_native_raw: StrictBool = Field(default=False, description="raw capture batches "
                                     "(unchanged) plus the in-scope deliveries decrypted")
    time_zone: str = Field(default="UTC", max_length=64, description="IANA name; days of "
                           "RSMF slices and transcript times are cut in it")

    def options(self) -> ExportOptions:
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown:
            raise InvalidInput(f"unknown export formats {unknown}; known: {list(FORMATS)}",
                             code="export_format_invalid")  # fmt: skip
        return ExportOptions(bates_prefix=self.bates_prefix, bates_start=self.bates_start,
                             include_media=self.include_media,
                             include_raw=self.include_native_raw,
                             transcripts="transcripts" in self.formats,
                             time_zone=self.time_zone)  # fmt: skip


class SubjectAccessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str = Field(max_length=128, description="the data subject: wa_id or BSUID")
    time_zone: str = Field(default="UTC", max_length=64)


def _view(job: Job) -> dict[str, Any]:
    """The job view without a subject access request's contact (a phone number) and the
    submitter's token details (the owner is shown)."""
    view = job_view(job)
    view["params"] = {k: v for k, v in (view.get("params") or {}).items()
                      if k not in ("contact", "actor")}  # fmt: skip
    return view


@router.post("/cases/{case_id}/exports", status_code=202)
def create_export(case_id: str, body: ExportBody, request: Request,
                  principal: Exporter) -> dict[str, Any]:  # fmt: skip
    runtime = get_runtime(request)
    options = body.options()
    actor = actor_of(principal)
    case = runtime.cases.get(case_id, actor)  # 404 outside the token's numbers
    numbers = case.get("numbers")
    job = runtime.export_jobs().submit(KIND, case_params(case_id, actor, options),
                                      JobOwner.of(principal), numbers=numbers)  # fmt: skip
    return _view(job)


@router.post("/subject-access", status_code=202)
def create_subject_access(body: SubjectAccessBody, request: Request,
                          principal: SubjectAccess) -> dict[str, Any]:  # fmt: skip
    """Every record of one contact (across the token's numbers) as a readable PDF and
    JSON inside a verifiable package (GDPR Art. 15)."""
    runtime = get_runtime(request)
    contact = body.contact.strip()
    # The log and the audit trail name a keyed pseudonym of the contact, never the contact.
    label = subject_label(runtime.pseudo, contact)
    options = ExportOptions(transcripts=True, time_zone=body.time_zone)
    actor = actor_of(principal)
    job = runtime.export_jobs().submit(KIND, subject_params(contact, label, actor, options),
                                      JobOwner.of(principal))  # fmt: skip
    return _view(job)


def _readable(runtime: Any, export_id: str, principal: Principal) -> Job:
    """The export job, if ``principal`` may see it: a subject-access package (GDPR Art. 15,
    one person's every message) only for the roles that may request one; a job of another
    scope or role is indistinguishable from a missing one."""
    job: Job = runtime.export_jobs().get(KIND, export_id, principal)
    if job.params.get("mode") == "subject" and principal.role not in _SUBJECT_ACCESS:
        raise NotFound("no such job", code="job_not_found")
    return job


@router.get("/exports/{export_id}")
def get_export(export_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    runtime = get_runtime(request)
    job = _readable(runtime, export_id, principal)
    runtime.audit.record(AuditAction.EXPORT_VIEWED, actor_of(principal),
                         concerns=job.numbers or [], export_id=export_id,
                         state=str(job.state))  # fmt: skip
    return _view(job)


@router.get("/exports/{export_id}/download")
def download_export(export_id: str, request: Request, principal: Reader) -> StreamingResponse:
    runtime = get_runtime(request)
    service = runtime.export_jobs()
    job = _readable(runtime, export_id, principal)
    ref, chunks = service.open_artifact(job, ARTIFACT)
    runtime.audit.record(AuditAction.EXPORT_DOWNLOADED, actor_of(principal),
                         concerns=job.numbers or [], export_id=export_id,
                         sha256=ref.sha256, size=ref.size)  # fmt: skip
    return StreamingResponse(chunks, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="export-{export_id}.zip"',
        "Content-Length": str(ref.size), "X-Content-SHA256": ref.sha256})  # fmt: skip
