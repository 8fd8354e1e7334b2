"""Consent over HTTP: record a change, ask the state as of any instant.

``POST /v1/consent`` (service, compliance_officer) → 201 once the ``consent`` record and
its log leaf are durable. ``GET /v1/consent?number=&contact=&purpose=&as_of=`` (admin,
compliance_officer, legal, auditor, service) answers from the derived view
(``archiver.consent``). ``number`` is the business ``phone_number_id``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.consent import (
    ConsentChange,
    ConsentRecorder,
    ConsentView,
    resolve_subject,
    state_as_of,
)
from archiver.errors import Forbidden
from archiver.ingest.consent import ConsentStatus

router = APIRouter(prefix="/v1", tags=["consent"])

_PURPOSE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_NUMBER = r"^[0-9]{1,32}$"


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=_NUMBER)
    contact: str = Field(min_length=3, max_length=128, description="wa_id / phone, or BSUID")
    purpose: str = Field(default="marketing", pattern=_PURPOSE)
    state: Literal["opt_in", "opt_out"]
    channel: str = Field(default="whatsapp", pattern=_PURPOSE)
    evidence: str = Field(min_length=1, max_length=10_000)
    actor: str = Field(min_length=1, max_length=200, description="who gave or withdrew it")
    occurred_at: AwareDatetime | None = None


@router.post("/consent", status_code=201)
async def record_consent(
    body: ConsentIn,
    request: Request,
    principal: Annotated[Principal, Depends(allow(Role.SERVICE, Role.COMPLIANCE_OFFICER))],
) -> JSONResponse:
    runtime = get_runtime(request)
    if not principal.sees_number(body.phone_number_id):
        raise Forbidden("this token may not act for that number")
    recorder = ConsentRecorder(
        objects=runtime.objects,
        state=runtime.state,
        keys=runtime.keys,
        log=runtime.log,
        pseudo=runtime.pseudo,
        policy=runtime.policy,
        on_logged=runtime.on_logged,
    )
    change = ConsentChange(
        phone_number_id=body.phone_number_id,
        contact=body.contact,
        purpose=body.purpose,
        state=ConsentStatus(body.state),
        channel=body.channel,
        evidence=body.evidence,
        actor=body.actor,
        occurred_at=body.occurred_at,
    )
    done = await asyncio.to_thread(
        recorder.record, change, {"token_id": principal.token_id, "name": principal.name}
    )
    runtime.audit.record(
        AuditAction.CONSENT_RECORDED,
        actor_of(principal),
        concerns=[body.phone_number_id],
        record_id=done.record_id,
        phone_number_id=body.phone_number_id,
        purpose=body.purpose,
        state=body.state,
        leaf=done.leaf,
    )
    return JSONResponse(
        {
            "record_id": done.record_id,
            "leaf_index": done.leaf,
            "state": body.state,
            "purpose": body.purpose,
        },
        status_code=201,
    )


@router.get("/consent")
async def consent_state(
    request: Request,
    principal: Annotated[
        Principal,
        Depends(allow(Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.LEGAL, Role.AUDITOR, Role.SERVICE)),
    ],
    number: Annotated[str, Query(pattern=_NUMBER, description="business phone_number_id")],
    contact: Annotated[str, Query(min_length=3, max_length=128)],
    purpose: Annotated[str, Query(pattern=_PURPOSE)] = "marketing",
    as_of: Annotated[AwareDatetime | None, Query()] = None,
) -> dict[str, Any]:
    runtime = get_runtime(request)
    if not principal.sees_number(number):
        raise Forbidden("this token may not read that number")
    at = as_of or datetime.now(UTC)
    view = ConsentView(log=runtime.log, objects=runtime.objects, state=runtime.state)

    def answer() -> dict[str, Any]:
        view.catch_up()
        subject = resolve_subject(runtime.state, runtime.pseudo, number, contact)
        found = state_as_of(view.person_changes(number, subject, purpose), at)
        return {
            "number": number,
            "purpose": purpose,
            "as_of": at.isoformat(),
            "state": found.state,
            "since": found.since,
            "record_id": found.record_id,
            "source": found.source,
            "channel": found.channel,
            "changes_known": found.changes,
        }

    result = await asyncio.to_thread(answer)
    runtime.audit.record(
        AuditAction.RECORD_VIEWED,
        actor_of(principal),
        concerns=[number],
        what="consent_state",
        number=number,
        purpose=purpose,
        as_of=at.isoformat(),
        state=result["state"],
    )
    return result
