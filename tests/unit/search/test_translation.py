"""AST -> Elasticsearch DSL and -> SQLite FTS5/SQL, and the shared request helpers."""

from __future__ import annotations

import pytest

from search import es_dsl
from search._common import (
    MARK_CLOSE,
    MARK_OPEN,
    check,
    decode_cursor,
    encode_cursor,
    fingerprint,
    render_highlight,
)
from search.errors import InvalidRequest
from search.port import SearchRequest
from search.query import Term, parse
from search.sqlite import fts_expr, to_sql


def test_es_leaves() -> None:
    assert es_dsl.to_dsl(parse("refund")) == {"match_phrase": {"text": {"query": "refund"}}}
    assert es_dsl.to_dsl(parse('"a b"~3')) == {
        "match_phrase": {"text": {"query": "a b", "slop": 3}}
    }
    assert es_dsl.to_dsl(parse("Refu*")) == {"prefix": {"text": {"value": "refu"}}}
    assert es_dsl.to_dsl(parse("contact:x")) == {
        "bool": {
            "should": [
                {"terms": {"contact": ["x"]}},
                {"terms": {"contact_user_id": ["x"]}},
                {"terms": {"contact_username": ["x"]}},
                # ... or the contact's names, as a phrase
                {"match_phrase": {"contact_name": {"query": "x"}}},
                {"match_phrase": {"contact_profile_name": {"query": "x"}}},
            ],
            "minimum_should_match": 1,
        }
    }


def test_es_and_puts_fields_in_filter_and_negations_in_must_not() -> None:
    dsl = es_dsl.to_dsl(parse("refund type:image -spam date>=2024-01-01"))
    assert dsl == {
        "bool": {
            "must": [{"match_phrase": {"text": {"query": "refund"}}}],
            "filter": [
                {"terms": {"type": ["image"]}},
                {"range": {"ts": {"gte": "2024-01-01T00:00:00.000Z"}}},
            ],
            "must_not": [{"match_phrase": {"text": {"query": "spam"}}}],
        }
    }


def test_es_request_scope_and_dates_are_filters() -> None:
    req = SearchRequest(q="a", scope_numbers=["106540352242922"], date_from="2024-01-01",
                        date_to="2024-01-02T00:00:00.0005Z")  # fmt: skip
    body = es_dsl.query(check(req), req)
    assert body["bool"]["filter"] == [
        {"terms": {"phone_number_id": ["106540352242922"]}},  # scope: the number's identity
        {"range": {"ts": {"gte": "2024-01-01T00:00:00.000Z", "lt": "2024-01-02T00:00:00.001Z"}}},
    ]
    assert es_dsl.sort(SearchRequest(sort="relevance"))[-1] == {"id": "asc"}


def test_fts_expressions_quote_everything() -> None:
    assert fts_expr(Term('say"x')) == '"say""x"'
    assert fts_expr(parse("refu*")) == '"refu"*'  # type: ignore[arg-type]
    assert fts_expr(parse('"a b c"~4')) == 'NEAR("a" "b" "c", 4)'  # type: ignore[arg-type]
    sql, params = to_sql(parse("(a OR hold:h) -b"))
    assert "json_each" in sql and "NOT" in sql
    assert params == ['"a"', "h", '"b"']


def test_cursor_round_trip_and_binding() -> None:
    req = SearchRequest(q="a")
    cursor = encode_cursor({"f": fingerprint(req), "k": 1})
    assert decode_cursor(cursor, req)["k"] == 1
    with pytest.raises(InvalidRequest, match="different query"):
        decode_cursor(cursor, SearchRequest(q="b"))
    with pytest.raises(InvalidRequest, match="malformed"):
        decode_cursor("!!!", req)


@pytest.mark.parametrize("req", [
    SearchRequest(size=-1), SearchRequest(size=100_000), SearchRequest(filters={"x": ["1"]}),
    SearchRequest(facets=["x"]), SearchRequest(sort="random"),  # type: ignore[arg-type]
])  # fmt: skip
def test_check_refuses_bad_requests(req: SearchRequest) -> None:
    with pytest.raises(InvalidRequest):
        check(req)


def test_highlights_escape_content_but_not_marks() -> None:
    raw = f"<script>{MARK_OPEN}refund{MARK_CLOSE} & co"
    assert render_highlight(raw) == "&lt;script&gt;<em>refund</em> &amp; co"


def test_both_adapters_satisfy_the_rebuildable_port() -> None:
    from search.elastic import ElasticIndex
    from search.port import RebuildableIndex
    from search.sqlite import SqliteIndex

    def takes(ix: RebuildableIndex) -> None:  # mypy checks the structural match
        assert callable(ix.swap_alias)

    for cls in (ElasticIndex, SqliteIndex):
        for method in ("create_fresh_index", "upsert", "swap_alias", "refresh", "ping",
                       "ensure_index", "search", "count", "delete_matching", "delete_ids", "get",
                       "force_merge_expunge"):  # fmt: skip
            assert callable(getattr(cls, method)), (cls, method)
