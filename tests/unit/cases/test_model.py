"""The pure case model: number-scope rules, validation codes, and the one query string."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from archiver.cases.model import Custodians, Scope, check_text, resolve, scope_query
from archiver.cases.service import covers
from archiver.errors import Forbidden, InvalidInput
from search.errors import QuerySyntaxError
from search.query import And, DateRange, Field, Or, parse


def test_scope_numbers_come_from_the_scope_then_custodians_then_the_token() -> None:
    _, s = resolve(Custodians(), Scope(numbers=("2", "1")), token_numbers=None)
    assert s.numbers == ("1", "2")
    _, s = resolve(Custodians(numbers=("5",)), Scope(), token_numbers=None)
    assert s.numbers == ("5",)
    _, s = resolve(Custodians(), Scope(), token_numbers=["7", "8"])
    assert s.numbers == ("7", "8")
    _, s = resolve(Custodians(), Scope(), token_numbers=None)
    assert s.numbers is None  # every number: an unscoped token only


@pytest.mark.parametrize(("custodians", "scope"), [
    (Custodians(), Scope(numbers=("1", "9"))),
    (Custodians(numbers=("9",)), Scope(numbers=("1",))),
    (Custodians(numbers=("9",)), Scope()),
])  # fmt: skip
def test_a_scoped_token_cannot_name_another_number(custodians: Custodians, scope: Scope) -> None:
    with pytest.raises(Forbidden) as err:
        resolve(custodians, scope, token_numbers=["1"])
    assert err.value.code == "case_number_forbidden" and err.value.details == {"numbers": ["9"]}


def test_bad_scopes_are_refused_by_code() -> None:
    def code(c: Custodians, s: Scope) -> str:
        with pytest.raises(InvalidInput) as err:
            resolve(c, s, token_numbers=None)
        return err.value.code

    assert code(Custodians(numbers=("01",)), Scope()) == "case_number_invalid"
    assert code(Custodians(contacts=("a b",)), Scope()) == "case_contact_invalid"
    assert code(Custodians(contacts=('x"',)), Scope()) == "case_contact_invalid"
    assert code(Custodians(numbers=("2",)), Scope(numbers=("1",))) == \
        "case_custodian_outside_scope"
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert code(Custodians(), Scope(date_from=day, date_to=day)) == "case_dates_invalid"
    with pytest.raises(QuerySyntaxError):
        resolve(Custodians(), Scope(query="a) OR (b"), token_numbers=None)


def test_the_query_cannot_escape_the_dates_and_contacts() -> None:
    lo, hi = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
    c, s = resolve(Custodians(contacts=("US.1349", "1555")),
                   Scope(query="a OR b", date_from=lo, date_to=hi), token_numbers=None)
    q = scope_query(c, s)
    tree = parse(q)
    assert isinstance(tree, And)  # everything is ANDed at the top
    assert Or in {type(child) for child in tree.children}
    dates = [ch for ch in tree.children if isinstance(ch, DateRange)]
    assert DateRange(gte=lo) in dates and DateRange(lt=hi) in dates
    contacts = next(ch for ch in tree.children
                    if isinstance(ch, Or) and isinstance(ch.children[0], Field))
    assert {f.value for f in contacts.children if isinstance(f, Field)} == {"US.1349", "1555"}
    naive = datetime(2026, 1, 1)  # naive times are UTC
    _, s2 = resolve(Custodians(), Scope(date_from=naive), token_numbers=None)
    assert s2.date_from == lo
    assert scope_query(Custodians(), Scope()) == ""


def test_covers_matches_the_principal_rule() -> None:
    assert covers(None, None) and covers(None, ["1"])
    assert covers(["1", "2"], ["1"]) and not covers(["1"], ["1", "2"])
    assert not covers(["1"], None) and not covers(["1"], [])


@pytest.mark.parametrize("when", [
    datetime.fromisoformat("9999-12-31T23:59:59-23:59"),
    datetime.fromisoformat("0001-01-01T00:00:00+01:00"),
])  # fmt: skip
def test_a_date_outside_the_utc_range_is_case_dates_invalid(when: datetime) -> None:
    for scope in (Scope(date_from=when), Scope(date_to=when)):
        with pytest.raises(InvalidInput) as e:
            resolve(Custodians(), scope, token_numbers=None)
        assert e.value.code == "case_dates_invalid"


@pytest.mark.parametrize("value", ["a\x00b", "tab\there", "line\n", "\x1b[2J", "del\x7f"])
def test_control_characters_are_refused_in_text(value: str) -> None:
    for name, code in (("name", "case_name_invalid"), ("matter_number", "case_matter_invalid"),
                       ("description", "case_field_invalid")):  # fmt: skip
        with pytest.raises(InvalidInput) as e:
            check_text(value, name=name, limit=4000, required=False)
        assert e.value.code == code
    assert check_text(" Acme v. Ëxample ", name="name", limit=200, required=True) == \
        "Acme v. Ëxample"


def test_an_erased_marker_is_kept_never_added_and_still_narrows_the_scope() -> None:
    marker = "erased:20261206T171540156964-c7d7dc10"
    custodians = Custodians(contacts=(marker, "16505550001"))
    with pytest.raises(InvalidInput) as e:  # a request cannot name a marker
        resolve(custodians, Scope(), token_numbers=["1"])
    assert e.value.code == "case_contact_invalid"
    kept, scope = resolve(custodians, Scope(), token_numbers=["1"], kept=[marker])
    assert kept.contacts == ("16505550001", marker)
    # Every contact erased: the scope keeps the marker's term, it never widens.
    tree = parse(scope_query(Custodians(contacts=(marker,)), scope))
    assert tree == Field("contact", marker)


def test_the_dat_custodian_is_the_case_s_not_the_token_s() -> None:
    from archiver.export.job import case_custodian

    assert case_custodian({"numbers": ["7"], "custodians": {}}) == "7"
    assert case_custodian({"numbers": None, "custodians": {}}) == "all numbers"
    assert case_custodian({"numbers": ["7", "8"], "custodians": {
        "numbers": ["8"], "contacts": ["erased:x"]}}) == "8, erased:x"  # fmt: skip
