"""The case model (pure): custodians, scope, the checks on both, and the one search query
a scope stands for.

A case's **scope** is a search query (``docs/search.md``), an optional date range
(``date_from`` inclusive, ``date_to`` exclusive) and the business numbers it covers
(``phone_number_id``; ``None`` = every number, only for an unscoped token). Its
**custodians** are business numbers and contacts (``wa_id`` or BSUID); custodian contacts
narrow the scope to their conversations (``contact:``). ``scope_query`` renders query,
dates and contacts as one query string, so a hold of the scope and the export's record
list run exactly the same search; numbers are applied as the index's number scope.

Errors (``archiver.errors`` subclasses, each with a machine code)::

    InvalidInput  case_name_invalid, case_matter_invalid, case_number_invalid,
                  case_contact_invalid, case_dates_invalid, case_custodian_outside_scope,
                  case_scope_too_large (and the query's own query_* codes)
    Forbidden     case_number_forbidden (a number outside the acting token's scope)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.errors import Forbidden, InvalidInput
from search.query import parse

PHONE_NUMBER_ID = re.compile(r"[1-9][0-9]{0,31}")  # as tokens (archiver.auth)
# A wa_id (digits) or a BSUID (``US.13491208655302741918``): no quote, space or operator,
# so a contact can be put in a query phrase without escaping.
CONTACT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_NUMBERS = 100
MAX_CONTACTS = 100
CASE_ID = re.compile(r"case_[a-z2-7]{16}")
# What an erased custodian contact becomes (``CaseService.erase_custodians``): the
# erasure request's id, never the contact. ``:`` is outside ``CONTACT``, so a request can
# never name a marker it did not already have.
ERASED_MARKER = "erased:"


def is_erased(contact: str) -> bool:
    return contact.startswith(ERASED_MARKER)


def erased_marker(erasure_id: str) -> str:
    return ERASED_MARKER + erasure_id


@dataclass(frozen=True, slots=True)
class Custodians:
    numbers: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"numbers": list(self.numbers), "contacts": list(self.contacts)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Custodians:
        return cls(tuple(doc.get("numbers") or ()), tuple(doc.get("contacts") or ()))


@dataclass(frozen=True, slots=True)
class Scope:
    query: str = ""
    date_from: datetime | None = None
    date_to: datetime | None = None
    numbers: tuple[str, ...] | None = None  # None: every business number

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "date_from": _iso(self.date_from),
            "date_to": _iso(self.date_to),
            "numbers": None if self.numbers is None else list(self.numbers),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Scope:
        numbers = doc.get("numbers")
        return cls(
            str(doc.get("query") or ""),
            _parse_time(doc.get("date_from")),
            _parse_time(doc.get("date_to")),
            None if numbers is None else tuple(numbers),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def utc(value: datetime | None) -> datetime | None:
    """Naive times are UTC (as in the query syntax). A time whose UTC value falls outside
    years 1..9999 (``9999-12-31T23:59:59-23:59``) is InvalidInput ``case_dates_invalid``."""
    if value is None:
        return None
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidInput(f"{value.isoformat()} is outside the dates a scope can name",
                           code="case_dates_invalid") from exc  # fmt: skip


# C0 control characters and DEL: never part of a name or a note (NUL ends strings in
# other tools; the others hide text in listings and exports).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(value: str | None, *, name: str, limit: int, required: bool) -> str | None:
    code = {"name": "case_name_invalid", "matter_number": "case_matter_invalid"}.get(
        name, "case_field_invalid"
    )
    if value is not None and _CONTROL.search(value):
        raise InvalidInput(f"{name} must not contain control characters", code=code)
    if value is None or not value.strip():
        if required:
            raise InvalidInput(f"{name} must not be empty", code=code)
        return None
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", code=code)
    return value


def check_numbers(numbers: Sequence[str] | None, *, what: str) -> tuple[str, ...] | None:
    if numbers is None:
        return None
    if len(numbers) > MAX_NUMBERS:
        raise InvalidInput(f"at most {MAX_NUMBERS} {what}", code="case_scope_too_large")
    for n in numbers:
        if not PHONE_NUMBER_ID.fullmatch(n):
            raise InvalidInput(f"{what}: {n!r} is not a phone_number_id (digits only)",
                             code="case_number_invalid", details={"number": n})  # fmt: skip
    return tuple(sorted(set(numbers)))


def check_contacts(contacts: Sequence[str], *, kept: Sequence[str] = ()) -> tuple[str, ...]:
    """``kept``: erased markers the case already has (they may stay, never be added)."""
    if len(contacts) > MAX_CONTACTS:
        raise InvalidInput(f"at most {MAX_CONTACTS} custodian contacts",
                         code="case_scope_too_large")  # fmt: skip
    for c in contacts:
        if not CONTACT.fullmatch(c) and not (is_erased(c) and c in kept):
            raise InvalidInput(f"custodian contact {c!r} is not a wa_id or BSUID",
                             code="case_contact_invalid")  # fmt: skip
    return tuple(sorted(set(contacts)))


def resolve(
    custodians: Custodians,
    scope: Scope,
    *,
    token_numbers: Sequence[str] | None,
    kept: Sequence[str] = (),
) -> tuple[Custodians, Scope]:
    """Check custodians and scope against each other and the acting token's numbers, and
    settle the scope's numbers: given ones, else the custodian numbers, else the token's
    (``None`` only for an unscoped token that named none).

    Raises InvalidInput (malformed) and Forbidden ``case_number_forbidden`` (a number the
    token does not cover: a case can never reach beyond the token that shapes it).
    ``kept``: the case's erased markers, which may stay among its contacts."""
    c = Custodians(check_numbers(custodians.numbers, what="custodian numbers") or (),
                   check_contacts(custodians.contacts, kept=kept))  # fmt: skip
    numbers = check_numbers(scope.numbers, what="scope numbers")
    if numbers is not None and not numbers:
        raise InvalidInput("scope numbers must not be empty (omit them for every number)",
                         code="case_number_invalid")  # fmt: skip
    if token_numbers is not None:
        outside = sorted((set(numbers or ()) | set(c.numbers)) - set(token_numbers))
        if outside:
            raise Forbidden("this token does not cover these business numbers",
                            code="case_number_forbidden", details={"numbers": outside})  # fmt: skip
    if numbers is None:
        numbers = c.numbers or (tuple(sorted(token_numbers)) if token_numbers is not None
                                else None)  # fmt: skip
    if numbers is not None and not set(c.numbers) <= set(numbers):
        raise InvalidInput("custodian numbers must be within the scope's numbers",
                         code="case_custodian_outside_scope",
                         details={"numbers": sorted(set(c.numbers) - set(numbers))})  # fmt: skip
    lo, hi = utc(scope.date_from), utc(scope.date_to)
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidInput("date_from must be before date_to", code="case_dates_invalid")
    resolved = Scope(scope.query.strip(), lo, hi, numbers)
    parse(resolved.query)  # QuerySyntaxError / QueryTooComplex: 400 with the position
    parse(scope_query(c, resolved))  # the combined query must fit the limits too
    return c, resolved


def scope_query(custodians: Custodians, scope: Scope) -> str:
    """The scope as one query string: ``(query) AND date>=… AND date<… AND (contact:"…" OR
    …)``. The user's query parses on its own (checked first), so its parentheses balance
    and wrapping it keeps it one group: it cannot escape the date or contact terms.

    An erased contact's marker stays a term (``contact:"erased:<erasure id>"``): the index
    matches nothing with it (no contact has a ``:``), the export's tombstone lookup
    matches the records that erasure made unreadable (``archiver.export.erased``), and a
    scope whose contacts were all erased never widens to every contact."""
    parts: list[str] = []
    if scope.query.strip():
        parts.append(f"({scope.query})")
    if scope.date_from is not None:
        parts.append(f"date>={_iso(scope.date_from)}")
    if scope.date_to is not None:
        parts.append(f"date<{_iso(scope.date_to)}")
    if custodians.contacts:
        parts.append("(" + " OR ".join(f'contact:"{c}"' for c in custodians.contacts) + ")")
    return " AND ".join(parts)
