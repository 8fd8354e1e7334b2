"""GDPR erasure by crypto-shredding (``POST /v1/erasure``); see docs/retention.md."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.errors import Conflict, Forbidden
from archiver.retention.services import retention_services

router = APIRouter(prefix="/v1", tags=["erasure"])


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(min_length=1, max_length=64)
    contact: str = Field(min_length=1, max_length=200, description="wa_id or BSUID")


@router.post("/erasure")
def erase(
    body: ErasureRequest,
    request: Request,
    principal: Annotated[Principal, Depends(allow(Role.ADMIN, Role.COMPLIANCE_OFFICER))],
) -> dict[str, Any]:
    runtime = get_runtime(request)
    if not principal.sees_number(body.phone_number_id):
        raise Forbidden("this token does not cover that business number")
    service = retention_services(runtime).erasure
    try:
        result = service.erase(body.phone_number_id, body.contact, by=principal.role.value)
    except Conflict as exc:
        runtime.audit.record(
            AuditAction.ERASURE_REFUSED,
            actor_of(principal),
            concerns=[body.phone_number_id],
            reason=exc.message,
            details=exc.details,
        )
        raise
    runtime.audit.record(
        AuditAction.ERASURE_REQUESTED,
        actor_of(principal),
        concerns=[body.phone_number_id],
        subject=result["subject"],
        records=result["records"],
        keys_shredded=len(result["keys_shredded"]),
        capture_slots_shredded=result["capture_slots_shredded"],
    )
    return result
