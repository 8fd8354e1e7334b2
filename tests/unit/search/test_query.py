"""The query syntax parser (search/query.py): the grammar, every error, and properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from search.errors import QuerySyntaxError, QueryTooComplex
from search.query import (
    ALLOWED_FIELDS,
    LIMITS,
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    And,
    DateRange,
    Field,
    MatchAll,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    normalize_phone,
    parse,
    parse_date_bound,
    text_leaves,
)


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("q", "ast"), [
    ("", MatchAll()),
    ("   ", MatchAll()),
    ("refund", Term("refund")),
    ("refund card", And((Term("refund"), Term("card")))),
    ("refund AND card", And((Term("refund"), Term("card")))),
    ("refund OR card", Or((Term("refund"), Term("card")))),
    ("a b OR c", Or((And((Term("a"), Term("b"))), Term("c")))),
    ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),
    ("a (b OR c)", And((Term("a"), Or((Term("b"), Term("c")))))),
    ("NOT spam", Not(Term("spam"))),
    ("-spam", Not(Term("spam"))),
    ("refund -spam", And((Term("refund"), Not(Term("spam"))))),
    ("NOT NOT a", Not(Not(Term("a")))),
    ("e-mail", Term("e-mail")),
    ("and or not", And((Term("and"), Term("or"), Term("not")))),
    ('"refund card"', Phrase("refund card")),
    ('"  refund   card "', Phrase("refund card")),
    ('"refund card"~5', Phrase("refund card", 5)),
    ("Refu*", Prefix("refu")),
    ("type:Image", Field("type", "image")),
    ("from:+15550001234", Field("from", "15550001234")),
    ('number:"+1 (555) 000-1234"', Field("number", "15550001234")),
    ("contact:@alice", Field("contact", "alice")),  # a username with or without its "@"
    ('contact:"Alice Doe"', Field("contact", "Alice Doe")),
    ("hold:case-7", Field("hold", "case-7")),
    ("conversation:CaseSensitive", Field("conversation", "CaseSensitive")),
    ("a<b", Term("a<b")),
    ("date:[2024-01-01 TO 2024-02-01]", DateRange(d(2024, 1, 1), d(2024, 2, 2))),
    ("date:{2024-01-01 TO 2024-02-01}", DateRange(d(2024, 1, 2), d(2024, 2, 1))),
    ("date:[* TO 2024-02-01}", DateRange(None, d(2024, 2, 1))),
    ("date:[2024-01-01 TO *]", DateRange(d(2024, 1, 1), None)),
    ("date:2024-01-05", DateRange(d(2024, 1, 5), d(2024, 1, 6))),
    ("date>=2024-01-01", DateRange(gte=d(2024, 1, 1))),
    ("date>2024-01-01", DateRange(gte=d(2024, 1, 2))),
    ("date<2024-01-01", DateRange(lt=d(2024, 1, 1))),
    ("date<=2024-01-01", DateRange(lt=d(2024, 1, 2))),
    ("date>=2024-01-01T10:00:00+02:00", DateRange(gte=d(2024, 1, 1, 8))),
    ("date<2024-01-01T10:00:00", DateRange(lt=d(2024, 1, 1, 10))),
    ("date>2024-01-01T10:00:00Z", DateRange(gte=d(2024, 1, 1, 10, 0, 0, 1))),
])  # fmt: skip
def test_parses(q: str, ast: object) -> None:
    assert parse(q) == ast


@pytest.mark.parametrize(("q", "position", "message"), [
    ("(refund", 0, "missing ')'"),
    ("refund)", 6, "unbalanced ')'"),
    (")", 0, "unbalanced ')'"),
    ("a ( )", 2, "empty parentheses"),
    ("a OR", 4, "unexpected end of query"),
    ("OR a", 0, "'OR' needs a term on each side"),
    ("a AND AND b", 6, "'AND' needs a term on each side"),
    ("NOT", 3, "unexpected end of query"),
    ("a (b OR )", 8, "empty group or missing term"),
    ('say "refund card', 4, "unterminated phrase"),
    ('""', 0, "empty phrase"),
    ('"!!"', 0, "empty phrase"),
    ('"refund card"~', 14, "expected a number"),
    ('"refund"~2', 0, "proximity needs at least two words"),
    ("refund~2", 0, "only allowed after a quoted phrase"),
    ("re*und", 0, "wildcards are only allowed at the end"),
    ("re?und", 0, "wildcards are only allowed at the end"),
    ("r*", 0, "at least 2 letters"),
    ("re-f*", 0, "a prefix must be one word"),
    ("**", 0, "a prefix must be one word"),
    ("a - b", 2, "'-' must be followed directly by a term"),
    ("a !!", 2, "has no letters or digits"),
    ("colour:red", 0, "unknown field 'colour'"),
    ("a http://x", 2, "unknown field 'http'"),
    ("type:", 5, "field 'type' needs a value"),
    ('type:""', 5, "field 'type' needs a value"),
    ('from:"a b"~2', 5, "proximity is not allowed in field 'from'"),
    ("date:", 5, "'date' needs a value"),
    ("date>=", 6, "'date' needs a value"),
    ("date:yesterday", 5, "invalid date 'yesterday'"),
    ("date:2024-13-01", 5, "invalid date"),
    ("date>=2024-01-01T25:00", 6, "invalid date"),
    ("date:[2024-01-01 TO]", 5, "expected a range"),
    ("date:[2024-01-01 2024-02-01]", 5, "expected a range"),
    ("date:[2024-01-01 TO nope]", 20, "invalid date 'nope'"),
    ("date:[nope TO 2024-01-01]", 6, "invalid date 'nope'"),
    ("date:[2024-02-01 TO 2024-01-01]", 0, "empty date range"),
])  # fmt: skip
def test_errors_carry_position(q: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse(q)
    assert err.value.position == position
    assert message in err.value.message
    assert err.value.query == q
    assert f"at position {position}" in str(err.value)


def test_unknown_field_lists_allowed_fields() -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse("form:123")
    for name in ALLOWED_FIELDS:
        assert name in err.value.message
    assert err.value.code == "query_syntax"


def test_text_leaves_skip_negations_and_fields() -> None:
    node = parse('refund "a b" -spam type:image (xy* OR NOT y)')
    assert text_leaves(node) == [Term("refund"), Phrase("a b"), Prefix("xy")]


@pytest.mark.parametrize(("raw", "out"), [
    ("+1 (555) 000-1234", "15550001234"), ("4917", "4917"), ("@alice", "@alice"),
    ("abc-1", "abc-1"),
])  # fmt: skip
def test_normalize_phone(raw: str, out: str) -> None:
    assert normalize_phone(raw) == out


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöü0123456789", min_size=1, max_size=8)


@given(st.lists(_WORD, min_size=1, max_size=6))
def test_juxtaposed_words_are_an_and(words: list[str]) -> None:
    words = [w for w in words if w not in ("AND", "OR", "NOT")]
    node = parse(" ".join(words))
    leaves = [Term(w) for w in words]
    assert node == (leaves[0] if len(leaves) == 1 else And(tuple(leaves)))


@given(st.text(max_size=40))
def test_any_input_parses_or_raises_a_positioned_error(q: str) -> None:
    try:
        parse(q)
    except QuerySyntaxError as err:
        assert 0 <= err.position <= len(q)
        assert err.query == q


@pytest.mark.parametrize(("q", "code", "position"), [
    ("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1), "query_too_deep", MAX_DEPTH),
    ("-" * 900 + "a", "query_too_deep", MAX_DEPTH),
    ("a " + "NOT " * (MAX_DEPTH + 1) + "b", "query_too_deep", 2 + 4 * MAX_DEPTH),
    (" ".join(["a"] * (MAX_TERMS + 1)), "query_too_many_terms", 2 * MAX_TERMS),
    ("a" * (MAX_QUERY_CHARS + 1), "query_too_long", MAX_QUERY_CHARS),
    ("(" * 5000, "query_too_long", MAX_QUERY_CHARS),
])  # fmt: skip
def test_limits_are_named_and_positioned(q: str, code: str, position: int) -> None:
    """issue 14 #8: the grammar stops before recursing too deep, and says which limit."""
    with pytest.raises(QueryTooComplex) as err:
        parse(q)
    assert err.value.code == code and err.value.position == position
    assert err.value.maximum == LIMITS[err.value.limit]


def test_at_the_limits_parses() -> None:
    parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    parse("-" * MAX_DEPTH + "a")
    parse(" ".join(["a"] * MAX_TERMS))
    parse("a" * MAX_QUERY_CHARS)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # before datetime's first instant once in UTC
        "9999-12-31T23:59:59-14:00",  # after its last
        "9999-12-31",  # a whole day whose end is past the last instant
        "0001-01-01",
    ],
)
def test_dates_at_the_edge_of_time_are_refused_not_overflowed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date_bound(text)
    for query in (f"date:{text}", f"date:<={text}", f"date:>{text}", f"date:[{text} TO *]"):
        with pytest.raises(QuerySyntaxError):
            parse(query)
