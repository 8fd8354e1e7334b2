"""``GET /v1/search``: the query syntax of ``docs/search.md`` plus the same filters as
query parameters, facets, highlights, exact totals and an opaque cursor (no hit cap).

Every search is scoped to the token's business numbers (hits, totals and facets) and is
recorded as a ``search:executed`` audit event: who, role, query, filters, result count.
Documents are shaped by ``message_view``: a revoked message's original text is shown to
admin, compliance officer and legal, and redacted for auditors.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from archiver.api.deps import allow, get_runtime
from archiver.api.errors import BadRequest
from archiver.api.responses import FastJSONResponse
from archiver.audit import Actor, AuditAction
from archiver.auth import Principal, Role
from archiver.indexing.documents import current_reactions
from archiver.logs import get_logger
from archiver.metrics import SEARCH_SECONDS, SEARCHES
from search.errors import InvalidRequest, SearchError
from search.port import Hit, SearchRequest
from search.query import MAX_QUERY_CHARS

router = APIRouter(prefix="/v1", tags=["search"])
log = get_logger("archiver.search")

SEARCH_ROLES = (Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.LEGAL, Role.AUDITOR)
# Roles that may read the original text of a message its sender revoked (evidence).
REVOKED_READERS = frozenset({Role.ADMIN, Role.COMPLIANCE_OFFICER, Role.LEGAL})
DEFAULT_FACETS = ("type", "origin", "direction", "number", "display_number", "kind", "day")
# Kept in the index for threads and proofs; not part of the API's message shape.
_INTERNAL = ("id", "reactions", "subject")

Multi = Annotated[list[str] | None, Query()]


def actor_of(principal: Principal) -> Actor:
    """The audit actor of a request; its events concern the token's numbers by default."""
    return Actor(
        token_id=principal.token_id,
        name=principal.name,
        role=principal.role.value,
        numbers=principal.numbers,
    )


def scope_of(principal: Principal) -> list[str] | None:
    return list(principal.numbers) if principal.numbers is not None else None


def message_view(doc: dict[str, Any], role: Role) -> dict[str, Any]:
    """The API's shape of one indexed message, with the role's redactions applied."""
    out = {k: v for k, v in doc.items() if k not in _INTERNAL}
    out["reactions"] = current_reactions(doc.get("reactions"))
    out["redacted"] = False
    if doc.get("revoked") and role not in REVOKED_READERS:
        out["text"] = None
        out["edits"] = [{k: v for k, v in e.items() if k != "text"} for e in doc.get("edits") or []]
        out["redacted"] = True
    return out


def hit_view(hit: Hit, role: Role) -> dict[str, Any]:
    message = message_view(hit.doc, role)
    highlights = {} if message["redacted"] else {k: list(v) for k, v in hit.highlights.items()}
    return {"id": hit.id, "score": hit.score, "highlights": highlights, "message": message}


def audited_query(q: str) -> dict[str, Any]:
    """The query as the audit event keeps it: whole up to the grammar's length limit;
    beyond it a prefix, the length and the SHA-256 of the whole (the audit store is
    locked for years: a caller must not be able to fill it with one request)."""
    if len(q) <= MAX_QUERY_CHARS:
        return {"query": q}
    return {
        "query": q[:MAX_QUERY_CHARS],
        "query_truncated": True,
        "query_chars": len(q),
        "query_sha256": hashlib.sha256(q.encode("utf-8", "surrogatepass")).hexdigest(),
    }


def _split(values: list[str] | None) -> list[str]:
    """``?type=image&type=video`` and ``?type=image,video`` both mean image OR video."""
    out: list[str] = []
    for value in values or []:
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


@router.get("/search")
async def search(
    request: Request,
    principal: Annotated[Principal, Depends(allow(*SEARCH_ROLES))],
    # No transport cap: the grammar's own limits answer 400 naming the limit, and the
    # refused search is audited like any other (search.query.LIMITS).
    q: Annotated[str, Query(description="docs/search.md query syntax")] = "",
    from_: Annotated[list[str] | None, Query(alias="from")] = None,
    to: Multi = None,
    type: Multi = None,
    origin: Multi = None,
    direction: Multi = None,
    number: Annotated[list[str] | None, Query(description="business phone_number_id")] = None,
    display_number: Annotated[list[str] | None, Query(description="display number")] = None,
    status: Multi = None,
    conversation: Multi = None,
    contact: Multi = None,
    kind: Multi = None,
    event: Multi = None,
    error: Multi = None,
    pricing: Multi = None,
    date_from: Annotated[str | None, Query(description="ISO 8601, inclusive")] = None,
    date_to: Annotated[str | None, Query(description="ISO 8601, exclusive")] = None,
    sort: Literal["time", "time_asc", "relevance"] = "time",
    size: Annotated[int, Query(ge=0, le=1000)] = 20,
    cursor: str | None = None,
    facets: Multi = None,
    highlight: bool = True,
) -> FastJSONResponse:
    runtime = get_runtime(request)
    params = {
        "from": from_, "to": to, "type": type, "origin": origin, "direction": direction,
        "number": number, "display_number": display_number, "status": status,
        "conversation": conversation, "contact": contact,
        "kind": kind, "event": event, "error": error, "pricing": pricing,
    }  # fmt: skip
    filters = {name: _split(values) for name, values in params.items() if _split(values)}
    wanted = DEFAULT_FACETS if facets is None else tuple(_split(facets))
    search_request = SearchRequest(
        q=q,
        filters=filters,
        date_from=date_from,
        date_to=date_to,
        scope_numbers=scope_of(principal),
        sort=sort,
        size=size,
        cursor=cursor,
        facets=wanted,
        highlight=highlight,
    )

    # What every audit record of this search says, whatever the outcome.
    asked: dict[str, Any] = {
        **audited_query(q), "filters": filters, "date_from": date_from, "date_to": date_to,
        "sort": sort, "page": bool(cursor), "scope": scope_of(principal),
    }  # fmt: skip

    # The index call and the audit record block: one worker-thread hop for both (the
    # route and its auth dependency are async, so there is no other).
    def run() -> FastJSONResponse:
        backend = runtime.index.name
        started = time.perf_counter()
        try:
            result = runtime.index.search(search_request)
        except SearchError as exc:
            SEARCHES.labels(backend, exc.code).inc()
            runtime.audit.record(
                AuditAction.SEARCH_EXECUTED, actor_of(principal), **asked, outcome=exc.code
            )
            if isinstance(exc, InvalidRequest):  # a bad filter, facet or cursor: the caller's
                raise BadRequest(str(exc), code=exc.code) from exc
            raise
        elapsed = time.perf_counter() - started
        SEARCH_SECONDS.labels(backend).observe(elapsed)
        # Who searched and how much came back; never the query (it may quote content).
        log.info(
            "search", backend=backend, token_id=principal.token_id,
            role=principal.role.value, results=result.total, returned=len(result.hits),
            duration_ms=round(elapsed * 1000, 1),
        )  # fmt: skip
        SEARCHES.labels(backend, "ok").inc()
        runtime.audit.record(
            AuditAction.SEARCH_EXECUTED, actor_of(principal), **asked, outcome="ok",
            results=result.total, returned=len(result.hits), ids=[h.id for h in result.hits],
        )  # fmt: skip
        return FastJSONResponse(
            {
                "total": result.total,
                "hits": [hit_view(h, principal.role) for h in result.hits],
                "next_cursor": result.next_cursor,
                "facets": {name: dict(buckets) for name, buckets in result.facets.items()},
            }
        )

    return await run_in_threadpool(run)
