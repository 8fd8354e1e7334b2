"""GDPR erasure by crypto-shredding (``POST /v1/erasure``); see docs/retention.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from archiver.api.deps import allow, get_runtime
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.errors import Conflict, Forbidden, NotFound
from archiver.retention.scope import hold_numbers

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
    services = runtime.retention
    try:
        result = services.erasure.erase(
            body.phone_number_id, body.contact, by=principal.role.value,
            numbers=principal.numbers,
        )
    except Conflict as exc:
        refusal = _within_scope(exc, principal, services.holds.get)
        runtime.audit.record(
            AuditAction.ERASURE_REFUSED,
            actor_of(principal),
            concerns=[body.phone_number_id],
            reason=refusal.message,
            # The kind of refusal (``erasure_pending`` is none: nothing was decided yet),
            # so a report does not guess it from the message.
            code=refusal.code,
            details=refusal.details,
        )
        raise refusal from None
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


def _within_scope(
    exc: Conflict, principal: Principal, hold_of: Callable[[str], dict[str, Any]]
) -> Conflict:
    """The refusal as this principal may see it: holds it does not cover are not named (a
    scoped token must not learn another number's hold ids, nor read them in its audit)."""
    details = dict(exc.details or {})
    holds = [str(h) for h in details.get("holds") or []]
    if not holds or principal.numbers is None:
        return exc

    def visible(hold_id: str) -> bool:
        try:
            return principal.covers(hold_numbers(hold_of(hold_id)))
        except NotFound:
            return False

    shown = [h for h in holds if visible(h)]
    details["holds"] = shown
    if len(shown) < len(holds):
        details["holds_outside_scope"] = True
    if exc.code == "erasure_pending":  # its message names no hold: the holds waited for
        return Conflict(exc.message, code=exc.code, details=details)
    message = (f"legal hold {shown[0]} applies (GDPR Art. 17(3)(e))" if shown else
               "a legal hold outside this token's scope applies (GDPR Art. 17(3)(e))")
    return Conflict(message, code=exc.code, details=details)
