"""Erased records of an export's scope, found from the erasures themselves, never from
content (issue 11: an erasure before an export must show as tombstones in it).

An erasure deletes its records' index documents, so a scope run on the index after it no
longer finds them. Their tombstones come from working state instead: every erasure
procedure (``erasures/<subject>/<id>``) that destroyed its keys lists the ids of the
records it made unreadable, and each record's header stays readable in the store (clear,
pseudonyms only). :func:`erased_in_scope` yields the ids of those records that fall in the
scope; the gatherer exports each as a tombstone (its key is gone) with its stored bytes,
log entry and inclusion proof, which stay valid.

Whether an erased record *was* in scope is decided on its clear header with three-valued
logic (:func:`could_match`): the scope's number, date, kind, type, origin, direction,
conversation and status terms are checked exactly, a custodian ``contact:`` through the
alias registry (the subject the contact resolves to at the record's number), and a
full-text term, whose content is destroyed, is *unknown*. A record is in scope unless
its known facts exclude it: content destroyed by an erasure can no longer prove a record
out of a query, and a tombstone names only the erasure (date, request id), never content
or a contact. Then the family, as ``archiver.cases.scope`` adds it: an erased record
about a message in scope (same conversation and message ref), whether that message is
erased too or still indexed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from archiver.errors import NotFound
from archiver.indexing.documents import MESSAGE_KINDS, event_document, message_document
from archiver.keyspace import ERASURES_PREFIX
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.common import StoredRecord, record_by_id
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.identity import person_subjects, resolve_subject
from search.port import SearchIndex, SearchRequest
from search.query import (
    LOWERCASE_FIELDS,
    And,
    DateRange,
    Field,
    MatchAll,
    Node,
    Not,
    Or,
    parse,
)

# An erased custodian contact's marker in a case's scope (``archiver.cases.model``).
ERASED_MARKER = "erased:"
# Query fields a clear header answers exactly (query field -> header document field).
_CLEAR_FIELDS = {"number": "phone_number_id", "display_number": "business_number",
                 "type": "type", "origin": "origin", "direction": "direction",
                 "conversation": "conversation", "kind": "kind", "status": "status",
                 "policy": "policy"}  # fmt: skip
_PAGE = 1000


def header_document(header: Mapping[str, Any]) -> dict[str, Any]:
    """The index document of a record whose content is unreadable: its clear header only
    (what the follower indexes for a shredded record)."""
    build = message_document if header.get("kind") in MESSAGE_KINDS else event_document
    return build(dict(header), None, None)


def erased_records(state: StateStore) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(record id, erasure procedure)`` of every record an erasure made unreadable (its
    keys destroyed: the procedure is done, or ran past ``shred_keys``): the planned ones
    and the late ones (logged between the plan and the shred, found by ``purge_index``)."""
    for key in list(state.list(ERASURES_PREFIX)):
        value = state.get(key)
        if value is None:
            continue
        doc = json.loads(value.value)
        if doc.get("status") == "done" or "shred_keys" in (doc.get("done") or []):
            for record_id in [*(doc.get("record_ids") or []),
                              *(doc.get("late_record_ids") or [])]:
                yield str(record_id), doc


class _Facts:
    """What a clear header says about a record, for :func:`could_match`."""

    def __init__(self, record: StoredRecord, state: StateStore, pseudo: Pseudonymizer,
                 erased: Mapping[str, set[str]] | None = None) -> None:  # fmt: skip
        self.doc = header_document(record.header)
        self.subject = record.header.get("subject")
        self.state, self.pseudo = state, pseudo
        self.erased = erased or {}  # erasure id -> the subject ids it erased

    def field(self, name: str, value: str) -> bool | None:
        if name == "contact" and value.startswith(ERASED_MARKER):
            return self._erased_custodian(value[len(ERASED_MARKER):])
        if name == "contact":
            return self._contact(value)
        target = _CLEAR_FIELDS.get(name)
        if target is None:
            return None  # from/to, holds, errors, event names: content or not kept
        have = self.doc.get(target)
        if have is None:
            return None if target in ("type", "status") else False
        have = str(have).lower() if name in LOWERCASE_FIELDS else str(have)
        return have == value

    def _contact(self, value: str) -> bool | None:
        number = self.doc.get("phone_number_id")
        if not isinstance(self.subject, str) or not isinstance(number, str):
            return None
        person = person_subjects(self.state, resolve_subject(self.state, self.pseudo,
                                                             number, value))  # fmt: skip
        if self.subject in person:
            return True
        # Not this person's id; a name (``contact:"Pablo"``) matched the erased name.
        return False if value.isdigit() else None

    def _erased_custodian(self, erasure_id: str) -> bool | None:
        """A case's custodian erased by ``erasure_id`` (``archiver.cases.model``): this
        record is theirs when its subject is one that erasure erased (a later erasure of
        the same person included); a record without a subject is unknown."""
        if not isinstance(self.subject, str):
            return None
        return self.subject in self.erased.get(erasure_id, set())

    def date(self, node: DateRange) -> bool | None:
        ts = self.doc.get("ts")
        if not isinstance(ts, str):
            return None
        at = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        return (node.gte is None or at >= node.gte) and (node.lt is None or at < node.lt)


def could_match(node: Node, facts: _Facts) -> bool | None:
    """Three-valued: True (the header proves a match), False (it proves none), None (only
    the destroyed content could tell)."""
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Field):
        return facts.field(node.name, node.value)
    if isinstance(node, DateRange):
        return facts.date(node)
    if isinstance(node, Not):
        inner = could_match(node.child, facts)
        return None if inner is None else not inner
    if isinstance(node, And):
        values = [could_match(c, facts) for c in node.children]
        return False if False in values else (None if None in values else True)
    if isinstance(node, Or):
        values = [could_match(c, facts) for c in node.children]
        return True if True in values else (None if None in values else False)
    return None  # a full-text term: the content is destroyed


def erased_in_scope(
    *, objects: ObjectStore, state: StateStore, index: SearchIndex, pseudo: Pseudonymizer,
    query: str, numbers: Sequence[str] | None,
) -> Iterator[str]:
    """Ids of erased records in the scope ``query`` (the case's whole scope as one query,
    ``archiver.cases.model.scope_query``) within ``numbers`` (None: every number), and of
    erased records of the family of a message in that scope. Each once."""
    tree = parse(query)
    seen: set[str] = set()
    rest: list[StoredRecord] = []
    units: dict[str, set[str]] = {}
    procedures = list(erased_records(state))
    erased: dict[str, set[str]] = {}
    for _, proc in procedures:
        erased.setdefault(str(proc.get("id")), set()).update(
            str(s) for s in (proc.get("subjects") or [proc.get("subject")]) if s)
    for record_id, _ in procedures:
        if record_id in seen:
            continue
        seen.add(record_id)
        try:
            record = record_by_id(objects, record_id)
        except NotFound:
            continue  # disposed since: nothing left to show
        if numbers is not None and record.phone_number_id not in numbers:
            continue  # never across a scope
        if could_match(tree, _Facts(record, state, pseudo, erased)) is False:
            rest.append(record)
            continue
        unit, conversation = _unit(record)
        if unit and conversation:
            units.setdefault(conversation, set()).add(unit)
        yield record_id
    live: dict[str, set[str]] = {}
    for record in rest:
        unit, conversation = _unit(record)
        if not unit or not conversation:
            continue
        if conversation not in live:
            live[conversation] = _scope_units(index, query, numbers, conversation)
        if unit in units.get(conversation, set()) | live[conversation]:
            yield record.record_id


def _unit(record: StoredRecord) -> tuple[str | None, str | None]:
    refs = record.header.get("refs") or {}
    ref = (refs.get("edit_of") or refs.get("revoke_of") or refs.get("reaction_to")
           or record.header.get("message_ref"))  # fmt: skip
    conversation = record.header.get("conversation")
    return (str(ref) if ref else None,
            str(conversation) if isinstance(conversation, str) else None)  # fmt: skip


def _scope_units(index: SearchIndex, query: str, numbers: Sequence[str] | None,
                 conversation: str) -> set[str]:  # fmt: skip
    """Message refs of the scope's indexed documents in one conversation."""
    out: set[str] = set()
    cursor: str | None = None
    while True:
        page = index.search(SearchRequest(q=query, filters={"conversation": [conversation]},
                                          scope_numbers=numbers, size=_PAGE, cursor=cursor,
                                          sort="time_asc"))  # fmt: skip
        for hit in page.hits:
            ref = hit.doc.get("target_ref") or hit.doc.get("message_ref")
            if ref:
                out.add(str(ref))
        cursor = page.next_cursor
        if not cursor or not page.hits:
            return out
