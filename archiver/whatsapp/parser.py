"""WhatsApp Cloud API webhook body → typed events (pure; never raises).

Envelope (Meta "Webhooks overview"): ``{"object": "whatsapp_business_account", "entry":
[{"id": <WABA id>, "time"?, "changes": [{"field", "value"}]}]}``. Each item of the
value's arrays becomes one event; a bad item becomes an ``unknown`` event and the others
still parse. Every leaf of the body ends up either consumed by a typed field (its JSON
pointer, or an ancestor's, is in some event's ``consumed``) or in some event's
``unknown`` — the parser tracks pointers instead of guessing.

Decisions (fixtures README §4–§7):

* Echo ``from``/``to``: Meta documents from = business, to = customer. pywa's edit/revoke
  echo fixtures have them swapped, so the business side is whichever equals
  ``metadata.display_phone_number`` (digits only); a swap is recorded as a Problem.
* History messages: the thread id (and BSUID-era ``thread.context``) is the customer;
  ``from`` equal to the display number (or no ``from_user_id`` and ``from`` ≠ thread id)
  means business-sent (outbound).
* ``history_declined.value_only.json``-like bodies (no envelope) become one ``unknown``
  event. Misplaced ``field``/``object`` (Meta's as-published partner_app examples) are
  recovered and reported as Problems.

Module map: ``pointers`` (JSON-pointer coverage, canonical JSON), ``change`` (one
``changes[]`` item's context and event builders), ``message_items`` (messages, echoes,
history) and ``item_parsers`` (statuses, calls, contact sync, preferences, admin
updates); this module walks the envelope.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from archiver.whatsapp.change import Change, simple, unknown_item
from archiver.whatsapp.events import (
    Direction,
    Event,
    EventKind,
    Origin,
    ParseResult,
    Problem,
)
from archiver.whatsapp.item_parsers import (
    parse_admin,
    parse_call,
    parse_preference,
    parse_state_sync,
    parse_status,
)
from archiver.whatsapp.message_items import parse_history, parse_message
from archiver.whatsapp.pointers import Take, canonical, covered, esc, leaves

_TEMPLATE_FIELDS = {
    "message_template_status_update",
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
}
_PHONE_FIELDS = {"phone_number_name_update", "phone_number_quality_update"}
_BUSINESS_FIELDS = {
    "business_capability_update",
    "payment_configuration_update",
    "security",
    "partner_solutions",
    "account_alerts",
    "account_review_update",
    "business_status_update",
    "business_username_update",
}


# ---------------------------------------------------------------- envelope


def _change_events(ch: Change) -> list[Event]:
    value, vp = ch.value, ch.vptr
    if not isinstance(value, dict):
        return [unknown_item(ch, vp, value, "change value is not an object")]
    field = ch.field or ""
    out: list[Event] = []

    def each(key: str) -> Iterator[tuple[str, Any]]:
        items = value.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                yield f"{vp}/{key}/{i}", item
        elif key in value:
            out.append(unknown_item(ch, f"{vp}/{key}", items, f"{key} is not an array"))

    hist = field == "history"
    for p, m in each("messages"):
        out.append(parse_message(ch, EventKind.HISTORY_MEDIA if hist else EventKind.MESSAGE, p, m))
    for p, m in each("message_echoes"):
        out.append(
            parse_message(
                ch,
                EventKind.HISTORY_MEDIA if hist else EventKind.ECHO,
                p,
                m,
                ("echo", None) if hist else None,
            )
        )
    for p, s in each("statuses"):
        out.append(parse_status(ch, p, s))
    for p, c in each("calls"):
        out.append(parse_call(ch, p, c))
    for p, h in each("history"):
        out.extend(parse_history(ch, p, h))
    for p, s in each("state_sync"):
        out.append(parse_state_sync(ch, p, s))
    for p, u in each("user_preferences"):
        out.append(parse_preference(ch, p, u))
    for p, e in each("errors"):
        t = Take()
        errs = t.errors({"errors": [e]}, "")
        t.consumed = {p + c.removeprefix("/errors/0") for c in t.consumed}
        out.append(
            simple(
                Event,
                EventKind.WEBHOOK_ERROR,
                ch,
                p,
                e,
                t,
                origin=Origin.META,
                occurred_at=None,
                errors=errs,
            )
        )
    if out:
        return out
    if field == "account_update":
        return [parse_admin(EventKind.ACCOUNT_UPDATE, ch, vp, value)]
    if field in _TEMPLATE_FIELDS or field.startswith("message_template_"):
        return [parse_admin(EventKind.TEMPLATE_UPDATE, ch, vp, value)]
    if field in _PHONE_FIELDS or field.startswith("phone_number_"):
        return [parse_admin(EventKind.PHONE_NUMBER_UPDATE, ch, vp, value)]
    if field in _BUSINESS_FIELDS:
        return [parse_admin(EventKind.BUSINESS_UPDATE, ch, vp, value)]
    return [unknown_item(ch, vp, value, f"no parser for field {field!r}")]


def _whole_unknown(
    body: bytes, raw: Any, problems: list[Problem], code: str, why: str
) -> ParseResult:
    problems.append(Problem(code, "", why))
    ev = Event(
        kind=EventKind.UNKNOWN,
        field=None,
        waba_id=None,
        phone_number_id=None,
        display_phone_number=None,
        dedup_key=f"unknown:{hashlib.sha256(body).hexdigest()}",
        content_hash=hashlib.sha256(body).hexdigest(),
        occurred_at=None,
        origin=Origin.META,
        direction=Direction.NONE,
        raw=raw,
        unknown=MappingProxyType(dict(leaves(raw))),
    )
    return ParseResult((ev,), tuple(problems))


# ---------------------------------------------------------------- the bounded decoder

MAX_DEPTH = 64  # Meta's deepest documented body nests about 10 levels
# A delivery with one of these problems cannot become typed events: the processor keeps
# it as an ``unprocessable`` record pointing at its raw bytes (docs/formats.md).
UNPROCESSABLE = frozenset({"too_deep"})
# Repairs made to the parsed copy (never to the raw bytes): each flags the records of
# the events they touch with the same name.
REPAIRS = frozenset({"replaced_surrogates", "large_integer"})
_MAX_SAFE = 2**53
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE = re.compile("[\ud800-\udfff]")


class _TooDeep(Exception):
    pass


def _bounded(doc: Any, *, repair: bool) -> tuple[Any, list[Problem]]:
    """Walk the decoded body without recursion: refuse nesting deeper than ``MAX_DEPTH``
    (``_TooDeep``), replace lone surrogates (only reachable through ``\\uD8xx`` escapes,
    hence ``repair``) with U+FFFD, and note integers outside ±(2^53 - 1), which the
    records keep exactly as ``{"$bigint": ...}`` (``archiver.records.canonical``)."""
    problems: list[Problem] = []

    def fix(text: str, ptr: str) -> str:
        if repair and _LONE.search(text):
            problems.append(Problem("replaced_surrogates", ptr,
                                    "lone UTF-16 surrogate replaced with U+FFFD"))
            return _LONE.sub("\ufffd", text)
        return text

    def note(value: Any, ptr: str) -> None:
        if type(value) is int and not -_MAX_SAFE < value < _MAX_SAFE:
            problems.append(Problem("large_integer", ptr,
                                    "integer outside +-(2^53 - 1), kept exactly as $bigint"))

    if isinstance(doc, str):
        return fix(doc, ""), problems
    note(doc, "")
    stack: list[tuple[Any, str, int]] = [(doc, "", 1)]
    while stack:
        node, ptr, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _TooDeep
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                new_key = fix(key, f"{ptr}/{esc(key)}")
                if new_key != key:
                    del node[key]
                    node[new_key] = value
                self_ptr = f"{ptr}/{esc(new_key)}"
                if isinstance(value, str):
                    node[new_key] = fix(value, self_ptr)
                elif isinstance(value, dict | list):
                    stack.append((value, self_ptr, depth + 1))
                else:
                    note(value, self_ptr)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = fix(value, f"{ptr}/{i}")
                elif isinstance(value, dict | list):
                    stack.append((value, f"{ptr}/{i}", depth + 1))
                else:
                    note(value, f"{ptr}/{i}")
    return doc, problems


def unprocessable(result: ParseResult) -> Problem | None:
    """The problem that keeps this delivery from becoming typed events, if any."""
    return next((p for p in result.problems if p.code in UNPROCESSABLE), None)


def repair_flags(result: ParseResult) -> list[frozenset[str]]:
    """Per event of ``result``, the repairs (``REPAIRS``) made inside what it consumed or
    kept as unknown; a repair no event covers flags every event (conservative)."""
    flags: list[set[str]] = [set() for _ in result.events]
    for problem in result.problems:
        if problem.code not in REPAIRS:
            continue
        hits = [i for i, e in enumerate(result.events)
                if covered(problem.pointer, e.consumed) or problem.pointer in e.unknown]
        for i in hits or range(len(result.events)):
            flags[i].add(problem.code)
    return [frozenset(f) for f in flags]


def parse_delivery(body: bytes) -> ParseResult:
    """Parse one webhook POST body. Never raises; oddities become ``Problem``s."""
    problems: list[Problem] = []
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body.decode("utf-8", "replace")
        return _whole_unknown(body, text, problems, "not_json", "body is not JSON")
    try:
        doc, repaired = _bounded(doc, repair=_SURROGATE_ESCAPE.search(body) is not None)
    except _TooDeep:
        return _whole_unknown(body, None, problems, "too_deep",
                              f"body nests deeper than {MAX_DEPTH} levels")
    problems.extend(repaired)
    try:
        return _parse_doc(body, doc, problems)
    except RecursionError:  # pathological nesting: keep the body as one unknown event
        return _whole_unknown(body, doc, problems, "too_deep", "body nests too deeply")


def _parse_doc(body: bytes, doc: Any, problems: list[Problem]) -> ParseResult:
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), list):
        return _whole_unknown(
            body, doc, problems, "not_envelope", "body is not an {object, entry[]} webhook envelope"
        )
    base: set[str] = set()
    obj = doc.get("object")
    if obj == "whatsapp_business_account":
        base.add("/object")
    else:
        problems.append(Problem("unexpected_object", "/object", f"object is {obj!r}"))
    placed: list[tuple[str, Event]] = []
    for i, entry in enumerate(doc["entry"]):
        ep = f"/entry/{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            problems.append(Problem("bad_entry", ep, "entry without changes[]"))
            continue
        t = Take()
        waba = t.string(entry, ep, "id")
        etime = t.time(entry, ep, "time")
        entry_field = entry.get("field") if isinstance(entry.get("field"), str) else None
        if entry.get("object") == "whatsapp_business_account":
            t.consumed.add(f"{ep}/object")
            problems.append(Problem("misplaced_object", f"{ep}/object", "object inside entry"))
        for j, change in enumerate(entry["changes"]):
            cp = f"{ep}/changes/{j}"
            ct = Take()
            field = ct.string(change, cp, "field")
            value = change.get("value") if isinstance(change, dict) else None
            if field is None and entry_field:
                field = entry_field
                ct.consumed.add(f"{ep}/field")
                problems.append(Problem("misplaced_field", f"{ep}/field", "field inside entry"))
            if field is None and isinstance(value, dict) and isinstance(value.get("field"), str):
                field = value["field"]
                ct.consumed.add(f"{cp}/value/field")
                problems.append(
                    Problem("misplaced_field", f"{cp}/value/field", "field inside value")
                )
                if value.get("object") == "whatsapp_business_account":
                    ct.consumed.add(f"{cp}/value/object")
                value = {k: v for k, v in value.items() if k not in ("field", "object")}
            if field is None:
                problems.append(Problem("missing_field", cp, "change without field"))
            ch = Change(
                field=field,
                waba_id=waba,
                entry_time=etime,
                value=value,
                vptr=f"{cp}/value",
                base=base | t.consumed | ct.consumed,
                problems=problems,
            )
            try:
                evs = _change_events(ch)
            except Exception as exc:  # never raise: a parser bug must not lose a delivery
                evs = [unknown_item(ch, f"{cp}/value", value, f"parser error: {exc!r}")]
            placed.extend((cp, e) for e in evs)
            used = set().union(*(e.consumed for e in evs)) if evs else set()
            for cptr, _ in ch.contacts:
                if not any(p == cptr or p.startswith(cptr + "/") for p in used):
                    problems.append(
                        Problem("contact_unmatched", cptr, "contacts[] entry matches no item")
                    )
    return _attach_leftovers(body, doc, placed, problems)


def _attach_leftovers(
    body: bytes, doc: Any, placed: list[tuple[str, Event]], problems: list[Problem]
) -> ParseResult:
    """Give every leaf nobody consumed to the nearest event's ``unknown``."""
    if not placed:
        return _whole_unknown(body, doc, problems, "no_events", "envelope yielded no events")
    consumed: set[str] = set()
    for _, e in placed:
        consumed |= e.consumed
        consumed |= set(e.unknown)
    extra: dict[int, dict[str, Any]] = {}
    for p, v in leaves(doc):
        if covered(p, consumed):
            continue
        best = -1
        for idx, (cp, _) in enumerate(placed):
            if p.startswith(cp + "/") or p.startswith(cp.rsplit("/changes/", 1)[0] + "/"):
                best = idx
                break
        top = "/" + p.split("/")[1] if p else ""
        if best < 0 and not any(q.code == "unconsumed" and q.pointer == top for q in problems):
            problems.append(Problem("unconsumed", top, "data outside every parsed change"))
        extra.setdefault(max(best, 0), {})[p] = v
    events = []
    for idx, (_, e) in enumerate(placed):
        if idx in extra:
            e = replace(e, unknown=MappingProxyType({**e.unknown, **extra[idx]}))
        events.append(e)
    return ParseResult(tuple(events), tuple(problems))


__all__ = [
    "MAX_DEPTH", "REPAIRS", "UNPROCESSABLE", "canonical", "covered", "leaves", "parse_delivery",
    "repair_flags", "unprocessable",
]
