"""``GET /v1/audit``: the audit events (who read what), for admin and auditor.

Events come from the evidence store through the log (``AuditTrail.events``), oldest
first; filters ``action`` (e.g. ``search:executed``) and ``since`` (ISO 8601). The cursor
is opaque (the position after the last event returned, tied to the filters). Listing is
itself an ``audit:listed`` event. A number-scoped token sees only the events that
concern its numbers (``numbers`` of each event, written with it); an event that concerns
no particular number is shown to unscoped tokens only. Events are durable about a second
after the read they describe (group commit), so a listing may not yet show the very latest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from archiver.api.deps import allow, get_runtime
from archiver.api.errors import BadRequest
from archiver.api.responses import FastJSONResponse
from archiver.api.routes.search import actor_of
from archiver.audit import AuditAction
from archiver.auth import Principal, Role

router = APIRouter(prefix="/v1", tags=["audit"])


def _fingerprint(action: str | None, since: str | None) -> str:
    return hashlib.sha256(json.dumps([action, since]).encode()).hexdigest()[:12]


def _encode(offset: int, fp: str) -> str:
    raw = json.dumps({"o": offset, "f": fp}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, fp: str) -> int:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = int(payload["o"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("malformed cursor", code="invalid_cursor") from None
    if payload.get("f") != fp or offset < 0:
        raise BadRequest("the cursor belongs to different filters", code="invalid_cursor")
    return offset


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("since must be an ISO 8601 time", code="invalid_since") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


@router.get("/audit")
def list_audit(
    request: Request,
    principal: Annotated[Principal, Depends(allow(Role.ADMIN, Role.AUDITOR))],
    action: Annotated[str | None, Query(description="e.g. search:executed")] = None,
    since: Annotated[str | None, Query(description="ISO 8601")] = None,
    size: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> FastJSONResponse:
    runtime = get_runtime(request)
    if action is not None and action not in {a.value for a in AuditAction}:
        raise BadRequest(
            f"unknown action '{action}'",
            code="invalid_action",
            details={"allowed": sorted(a.value for a in AuditAction)},
        )
    fp = _fingerprint(action, since)
    offset = _decode(cursor, fp) if cursor else 0
    # Scoped like everything else: a number-scoped reader sees only events that concern
    # its own numbers (events that concern no particular number are for unscoped readers).
    events = (
        e for e in runtime.audit.events(since=_since(since), action=action)
        if principal.covers(e.get("numbers"))
    )
    page = list(islice(events, offset, offset + size + 1))
    more = len(page) > size
    page = page[:size]
    runtime.audit.record(
        AuditAction.AUDIT_LISTED, actor_of(principal), filter_action=action, since=since,
        page=bool(cursor), returned=len(page),
    )  # fmt: skip
    next_cursor = _encode(offset + size, fp) if more else None
    return FastJSONResponse({"events": page, "next_cursor": next_cursor})
