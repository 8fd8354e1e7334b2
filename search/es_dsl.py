"""Query AST and ``SearchRequest`` -> Elasticsearch query DSL. Pure (no client import).

Reference: Elasticsearch 8.19 Query DSL (bool, match_phrase with ``slop``, prefix, term(s),
range), ``search_after`` with a point in time, terms and date_histogram aggregations.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from search._common import FACET_SIZE, FACETS, MARK_CLOSE, MARK_OPEN, filter_terms, request_dates
from search.port import SearchRequest
from search.query import (
    FIELDS,
    NAME_FIELDS,
    And,
    DateRange,
    Field,
    MatchAll,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
)

TEXT = "text"


def _iso(instant: datetime) -> str:
    # Dates are indexed in milliseconds: round a bound up to the next millisecond, so that
    # ``> 10:00:00`` (sent as ``>= 10:00:00.000001``) excludes 10:00:00.000 as SQLite does.
    ceil = instant + timedelta(microseconds=-instant.microsecond % 1000)
    return ceil.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def date_range(r: DateRange) -> dict[str, Any]:
    bounds: dict[str, str] = {}
    if r.gte is not None:
        bounds["gte"] = _iso(r.gte)
    if r.lt is not None:
        bounds["lt"] = _iso(r.lt)
    return {"range": {"ts": bounds}}


def _terms(fields: tuple[str, ...], values: list[str]) -> dict[str, Any]:
    clauses = [{"terms": {f: values}} for f in fields]
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def _field(node: Field) -> dict[str, Any]:
    """Exact values, and for ``contact`` also the names as a phrase (the standard analyser
    lower-cases, so the name matches case-insensitively, like FTS5)."""
    clause = _terms(FIELDS[node.name], [node.value])
    names = NAME_FIELDS.get(node.name, ())
    if not names or not re.search(r"\w", node.value):
        return clause
    exact = [{"terms": {f: [node.value]}} for f in FIELDS[node.name]]
    should = [*exact, *({"match_phrase": {f: {"query": node.value}}} for f in names)]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def _is_filter(node: Node) -> bool:
    return isinstance(node, Field | DateRange)


def to_dsl(node: Node) -> dict[str, Any]:
    """Translate one AST node. A bare word is a one-word phrase, like in FTS5, so a word
    the analyser splits (``e-mail``) means the same thing in both adapters."""
    if isinstance(node, MatchAll):
        return {"match_all": {}}
    if isinstance(node, Term):
        return {"match_phrase": {TEXT: {"query": node.text}}}
    if isinstance(node, Prefix):
        return {"prefix": {TEXT: {"value": node.text}}}
    if isinstance(node, Phrase):
        body: dict[str, Any] = {"query": node.text}
        if node.slop is not None:
            body["slop"] = node.slop
        return {"match_phrase": {TEXT: body}}
    if isinstance(node, Field):
        return _field(node)
    if isinstance(node, DateRange):
        return date_range(node)
    if isinstance(node, Not):
        return {"bool": {"must_not": [to_dsl(node.child)]}}
    if isinstance(node, And):
        must = [to_dsl(c) for c in node.children if not _is_filter(c) and not isinstance(c, Not)]
        bool_: dict[str, Any] = {}
        if must:
            bool_["must"] = must
        filters = [to_dsl(c) for c in node.children if _is_filter(c)]
        if filters:
            bool_["filter"] = filters
        negated = [to_dsl(c.child) for c in node.children if isinstance(c, Not)]
        if negated:
            bool_["must_not"] = negated
        return {"bool": bool_}
    if isinstance(node, Or):
        return {"bool": {"should": [to_dsl(c) for c in node.children], "minimum_should_match": 1}}
    raise TypeError(node)  # pragma: no cover - Node is a closed union


def query(node: Node, request: SearchRequest) -> dict[str, Any]:
    """The whole query: the AST scores, filters and scope only restrict (``filter`` clauses,
    so they also bound totals and aggregations)."""
    filters = [_terms(fields, values) for fields, values in filter_terms(request)]
    dates = request_dates(request)
    if dates is not None:
        filters.append(date_range(dates))
    return {"bool": {"must": [to_dsl(node)], "filter": filters}}


def sort(request: SearchRequest) -> list[Any]:
    # ``id`` breaks ties so search_after never skips or repeats a hit.
    if request.sort == "relevance":
        return [{"_score": "desc"}, {"id": "asc"}]
    order = "asc" if request.sort == "time_asc" else "desc"
    return [{"ts": order}, {"id": "asc"}]


def aggs(request: SearchRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in request.facets:
        if name == "day":
            out[name] = {"date_histogram": {
                "field": "ts", "calendar_interval": "day", "format": "yyyy-MM-dd",
                "time_zone": "UTC", "min_doc_count": 1,
            }}  # fmt: skip
        else:
            out[name] = {"terms": {"field": FACETS[name], "size": FACET_SIZE}}
    return out


HIGHLIGHT: dict[str, Any] = {
    "pre_tags": [MARK_OPEN],
    "post_tags": [MARK_CLOSE],
    "fields": {TEXT: {"number_of_fragments": 3, "fragment_size": 150}},
}
