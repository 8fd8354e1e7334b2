"""Pieces both adapters share: request checks, filters, facets, cursors, highlights."""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from search.errors import InvalidRequest
from search.port import SearchRequest
from search.query import FIELDS, DateRange, Node, normalize_field_value, parse, parse_date_bound

# Facet name -> document field ("day" is a per-day histogram of ``ts``, UTC).
FACETS: dict[str, str] = {
    "type": "type",
    "origin": "origin",
    "direction": "direction",
    "number": "phone_number_id",  # the number identity (search.query.FIELDS)
    "display_number": "business_number",
    "status": "status",
    "kind": "kind",
    "day": "ts",
}
FACET_SIZE = 100
MAX_SIZE = 1000
# Private-use characters mark highlights inside the engines; the text is HTML-escaped
# afterwards and the marks become <em>, so stored content can never inject markup.
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"


def check(request: SearchRequest) -> Node:
    """Parse the query and check the rest of the request; return the AST."""
    node = parse(request.q)
    if not 0 <= request.size <= MAX_SIZE:
        raise InvalidRequest(f"size must be between 0 and {MAX_SIZE}")
    for name in request.filters:
        if name not in FIELDS:
            raise InvalidRequest(
                f"unknown filter field '{name}'; allowed: {', '.join(sorted(FIELDS))}"
            )
    for facet in request.facets:
        if facet not in FACETS:
            raise InvalidRequest(f"unknown facet '{facet}'; allowed: {', '.join(FACETS)}")
    if request.sort not in ("time", "time_asc", "relevance"):
        raise InvalidRequest(f"unknown sort '{request.sort}'")
    return node


def filter_terms(request: SearchRequest) -> list[tuple[tuple[str, ...], list[str]]]:
    """(document fields, allowed values) per filter; scope is one more such filter."""
    out = [
        (FIELDS[name], [normalize_field_value(name, v) for v in values])
        for name, values in request.filters.items()
    ]
    if request.scope_numbers is not None:
        # Scope is by phone_number_id, the one number identity (tokens, holds, audit).
        out.append(
            (
                ("phone_number_id",),
                [normalize_field_value("number", v) for v in request.scope_numbers],
            )
        )
    if request.ids is not None:
        out.append((("id",), list(request.ids)))  # both adapters store the id as a keyword
    return out


def request_dates(request: SearchRequest) -> DateRange | None:
    def bound(text: str | None, name: str) -> datetime | None:
        if text is None:
            return None
        try:
            return parse_date_bound(text)[0]
        except ValueError:
            raise InvalidRequest(f"{name} must be an ISO 8601 date or time") from None

    lo, hi = bound(request.date_from, "date_from"), bound(request.date_to, "date_to")
    return None if lo is None and hi is None else DateRange(gte=lo, lt=hi)


def fingerprint(request: SearchRequest) -> str:
    """Ties a cursor to the query it came from (a cursor of another query is refused)."""
    key = json.dumps(
        [
            request.q,
            sorted((k, list(v)) for k, v in request.filters.items()),
            request.date_from,
            request.date_to,
            None if request.scope_numbers is None else sorted(request.scope_numbers),
            request.sort,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, request: SearchRequest) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidRequest("malformed cursor") from None
    if not isinstance(payload, dict) or payload.get("f") != fingerprint(request):
        raise InvalidRequest("the cursor belongs to a different query")
    return payload


def render_highlight(fragment: str) -> str:
    return (
        html.escape(fragment, quote=False).replace(MARK_OPEN, "<em>").replace(MARK_CLOSE, "</em>")
    )


def day_key(iso: str) -> str:
    return iso[:10]


def as_list(values: Sequence[str]) -> list[str]:
    return [str(v) for v in values]
