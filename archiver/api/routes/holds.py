"""Legal holds (``/v1/holds``) and the minimal disposition review queue
(``/v1/disposition/reviews``). Thin: parse, call ``archiver.retention``, audit, answer.

Number scope: a number-scoped token lists, reads, releases and approves only holds and
reviews that concern its own numbers (``archiver.retention.scope``). Another number's
hold or review answers 404, exactly as one that does not exist, so a scoped token cannot
even learn that it exists.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from archiver.api.deps import allow, get_runtime
from archiver.api.errors import BadRequest
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role
from archiver.errors import Forbidden, NotFound
from archiver.retention.common import resolve_subject
from archiver.retention.disposition import Approver as ReviewApprover
from archiver.retention.disposition import approve_review, list_reviews
from archiver.retention.holds import HoldScope, summary
from archiver.retention.scope import hold_numbers, review_numbers, review_of
from archiver.retention.services import RetentionServices

router = APIRouter(prefix="/v1", tags=["holds"])

_WRITERS = (Role.ADMIN, Role.LEGAL)
_READERS = (Role.ADMIN, Role.LEGAL, Role.COMPLIANCE_OFFICER)
Writer = Annotated[Principal, Depends(allow(*_WRITERS))]
Reader = Annotated[Principal, Depends(allow(*_READERS))]
Approver = Annotated[Principal, Depends(allow(Role.ADMIN, Role.COMPLIANCE_OFFICER))]


class HoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    query: str | None = Field(default=None, max_length=4000)
    conversation: str | None = Field(default=None, max_length=200)
    contact: str | None = Field(default=None, max_length=200, description="wa_id or BSUID")
    phone_number_id: str | None = Field(default=None, max_length=64)


def _visible_hold(
    services: RetentionServices, hold_id: str, principal: Principal
) -> dict[str, Any]:
    """The hold, if this token may see it; else the same 404 as an unknown id."""
    doc = services.holds.get(hold_id)
    if not principal.covers(hold_numbers(doc)):
        raise NotFound(f"no hold {hold_id}", code="hold_not_found")
    return doc


@router.post("/holds", status_code=201)
def place_hold(body: HoldRequest, request: Request, principal: Writer) -> dict[str, Any]:
    runtime = get_runtime(request)
    if body.contact and not body.phone_number_id:
        raise BadRequest(
            "contact needs phone_number_id (subjects are per business number)",
            code="hold_scope_invalid",
        )
    if body.phone_number_id and not principal.sees_number(body.phone_number_id):
        raise Forbidden("this token does not cover that business number")
    subject = (
        resolve_subject(runtime.state, runtime.pseudo, body.phone_number_id, body.contact)
        if body.contact and body.phone_number_id else None
    )  # fmt: skip
    scope = HoldScope(body.query, body.conversation, subject, body.phone_number_id)
    services = runtime.retention
    doc = services.holds.place(
        scope,
        case_id=body.case_id,
        reason=body.reason,
        by=principal.name,
        numbers=principal.numbers,
    )
    out = summary(doc)
    runtime.audit.record(
        AuditAction.HOLD_PLACED,
        actor_of(principal),
        concerns=hold_numbers(doc) or [],
        hold_id=doc["id"],
        case_id=body.case_id,
        scope=doc["scope"],
        held_versions=out["held_versions"],
    )
    return out


@router.get("/holds")
def list_holds(request: Request, principal: Reader) -> dict[str, Any]:
    services = get_runtime(request).retention
    return {"holds": [
        summary(h) for h in services.holds.list() if principal.covers(hold_numbers(h))
    ]}  # fmt: skip


@router.get("/holds/{hold_id}")
def get_hold(hold_id: str, request: Request, principal: Reader) -> dict[str, Any]:
    doc = _visible_hold(get_runtime(request).retention, hold_id, principal)
    out = summary(doc)
    out["items"] = sorted(doc.get("items", {}).values(), key=lambda i: (i["key"], i["version_id"]))
    return out


@router.delete("/holds/{hold_id}")
def release_hold(hold_id: str, request: Request, principal: Writer) -> dict[str, Any]:
    runtime = get_runtime(request)
    services = runtime.retention
    # Checked before anything changes: another number's hold stays placed.
    _visible_hold(services, hold_id, principal)
    doc = services.holds.release(hold_id, by=principal.name)
    runtime.audit.record(
        AuditAction.HOLD_RELEASED,
        actor_of(principal),
        concerns=hold_numbers(doc) or [],
        hold_id=hold_id,
        released_versions=doc.get("released_count"),
        kept_by_other_holds=doc.get("kept_by_other_holds"),
    )
    return summary(doc)


@router.get("/disposition/reviews")
def reviews(request: Request, principal: Reader) -> dict[str, Any]:
    runtime = get_runtime(request)
    found = list_reviews(runtime.state)
    if principal.numbers is not None:
        found = [r for r in found if principal.covers(review_numbers(runtime.objects, r))]
    return {"reviews": found}


@router.post("/disposition/reviews/{record_id}/approve")
def approve(
    record_id: str,
    request: Request,
    principal: Approver,
) -> dict[str, Any]:
    runtime = get_runtime(request)
    if principal.numbers is not None:
        # A review of another number's record is, for this token, one that does not exist.
        review = review_of(runtime.state, record_id)
        if review is None or not principal.covers(review_numbers(runtime.objects, review)):
            raise NotFound(f"no disposition review for {record_id}", code="review_not_found")
    # Approvals count persons (the token's bound person), are scoped, versioned and
    # logged: archiver.retention.reviews.
    doc = approve_review(
        runtime.state,
        record_id,
        approver=ReviewApprover(
            principal.person, principal.token_id, principal.name, principal.numbers
        ),
        now=datetime.now(UTC),
        log=runtime.log,
        objects=runtime.objects,
    )
    runtime.audit.record(
        AuditAction.DISPOSITION_APPROVED, actor_of(principal),
        concerns=[doc.get("phone_number_id")], record_id=record_id,
        key=doc["key"], version_id=doc["version_id"], person=principal.person,
        status=doc["status"],
    )  # fmt: skip
    return doc
