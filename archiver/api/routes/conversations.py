"""``GET /v1/conversations/{conversation}``: a conversation's events in order.

Customer messages, Business App echoes, API sends and history-synced messages, oldest
first, each with its delivery statuses folded in (``status``, ``status_times``), its
edits beside the original text (``edits``), its current reactions, and ``revoked``
with the original text readable by admin, compliance officer and legal (redacted for
auditors), and calls. Edit, revoke and reaction events are not listed on their own: they
are shown on the message they are about; a history media delivery is shown on its
placeholder (one message, ``sources`` naming both records). Cursor-paginated; scoped
to the token's business numbers (another number's conversation is 404, as if it did not
exist); every page read is a ``thread:viewed`` audit event.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from archiver.api.deps import allow, get_runtime
from archiver.api.errors import BadRequest
from archiver.api.responses import FastJSONResponse
from archiver.api.routes.search import SEARCH_ROLES, actor_of, message_view, scope_of
from archiver.audit import AuditAction
from archiver.auth import Principal
from archiver.errors import NotFound
from archiver.indexing.documents import FOLDED_TYPES, THREAD_KINDS
from archiver.keyspace import media_jobs_of
from archiver.metrics import THREAD_VIEWS
from archiver.store.port import StateStore
from search.errors import InvalidRequest
from search.port import SearchRequest

router = APIRouter(prefix="/v1", tags=["conversations"])

# Events folded into the message they are about are left out of the listing.
_THREAD_QUERY = " ".join(f"-type:{t}" for t in FOLDED_TYPES)


def thread_request(
    conversation: str, principal: Principal, size: int, cursor: str | None, order: str
) -> SearchRequest:
    return SearchRequest(
        q=_THREAD_QUERY,
        # Messages and calls; statuses, preferences, contact sync... are searchable events
        # of the conversation, not lines of it (statuses are folded into their message).
        filters={"conversation": [conversation], "kind": sorted(THREAD_KINDS)},
        scope_numbers=scope_of(principal),
        sort="time_asc" if order == "asc" else "time",
        size=size,
        cursor=cursor,
    )


@router.get("/conversations/{conversation}")
def conversation_thread(
    conversation: str,
    request: Request,
    principal: Annotated[Principal, Depends(allow(*SEARCH_ROLES))],
    size: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> FastJSONResponse:
    runtime = get_runtime(request)
    try:
        result = runtime.index.search(thread_request(conversation, principal, size, cursor, order))
    except InvalidRequest as exc:  # a malformed or foreign cursor
        raise BadRequest(str(exc), code=exc.code) from exc
    THREAD_VIEWS.inc()
    runtime.audit.record(
        AuditAction.THREAD_VIEWED, actor_of(principal), conversation=conversation,
        page=bool(cursor), results=result.total, returned=len(result.hits),
        ids=[h.id for h in result.hits], scope=scope_of(principal),
    )  # fmt: skip
    if result.total == 0 and cursor is None:
        # Same answer for "no such conversation" and "not one of your numbers".
        raise NotFound("no such conversation", code="conversation_not_found")
    events = [message_view(h.doc, principal.role) for h in result.hits]
    for event in events:
        if event.get("media_mime") and event.get("record_id"):
            jobs = _media_jobs(runtime.state, str(event["record_id"]))
            if jobs:
                event["media_fetch"] = media_fetch(jobs, graph=runtime.graph is not None)
    first = result.hits[0].doc if result.hits else {}
    return FastJSONResponse(
        {
            "conversation": conversation,
            "phone_number_id": first.get("phone_number_id"),
            "business_number": first.get("business_number"),
            "contact": first.get("contact") or first.get("contact_user_id"),
            "contact_name": first.get("contact_name"),
            "total": result.total,
            "events": events,
            "next_cursor": result.next_cursor,
        }
    )


NO_GRAPH = "not fetched (no Graph API token)"
_FINISHED = ("done", "missing", "abandoned")


def _media_jobs(state: StateStore, record_id: str) -> list[dict[str, Any]]:
    """The message's media jobs still in working state (finished ones are dropped after
    a while: then the thread says nothing rather than guess)."""
    out = []
    for key in sorted(state.list(media_jobs_of(record_id))):
        value = state.get(key)
        if value is not None:
            out.append(json.loads(value.value))
    return out


def media_fetch(jobs: list[dict[str, Any]], *, graph: bool) -> list[dict[str, Any]]:
    """Each attachment's fetch state (pure). Without a Graph API token nothing is ever
    fetched, so an unfinished job says so instead of looking merely slow."""
    out = []
    for job in jobs:
        status = str(job.get("status", "pending"))
        item: dict[str, Any] = {"index": job.get("index"), "status": status}
        if not graph and status not in _FINISHED:
            item["status"], item["note"] = "not_fetched", NO_GRAPH
        out.append(item)
    return out
