"""Query holds and later arrivals: the index follower's hook (see ``archiver.retention.holds``).

A ``query`` hold cannot be checked when the processor writes a record (the record is not
in the index yet). After each batch of documents is upserted, the follower calls
:func:`hold_indexed_arrivals` with the batch's document ids; each open query hold's query
runs restricted to those ids (``SearchRequest.ids``) and the records it finds are held
like ``HoldService._apply`` holds them (record, raw batch slot, media). Then the family:
a document of the batch whose message (``unit_of``: an edit's target, a status's message,
…) an open hold holds is held by that hold too. The processor's hook already does that
when the record arrives; this catches the child that arrived before its parent was
indexed and held by a query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from archiver.errors import NotFound
from archiver.keyspace import HOLDS_OPEN_KEY
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.retention.common import StoredRecord, record_by_id
from archiver.retention.holds import (
    HoldRegistry,
    HoldStatus,
    flag_broken,
    item_id,
    records_of_hits,
    unit_of,
)
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.identity import person_subjects
from search.port import SearchIndex, SearchRequest

logger = get_logger("archiver.holds")

_IDS_PER_SEARCH = 500  # ids per restricted search (ES ``terms`` takes up to 65,536)


def hold_indexed_arrivals(
    *,
    index: SearchIndex,
    objects: ObjectStore,
    state: StateStore,
    log: LogAppender,
    keys: object,
    doc_ids: Sequence[str],
) -> int:
    """The index follower's hook, after a batch of documents is upserted: hold the records
    behind ``doc_ids`` that an open ``query`` hold's query matches. Costs one state GET
    when no hold is open. Never raises: a hold that fails is flagged (``broken`` on its
    document, ``archiver_hold_failures_total``) and the others go on; the
    ``holds-refresh`` job catches the records up. Returns the number of versions held."""
    if not doc_ids:
        return 0
    try:
        value = state.get(HOLDS_OPEN_KEY)
        if value is None:
            return 0
        queries = {
            hold_id: criteria
            for hold_id, criteria in json.loads(value.value).items()
            if isinstance(criteria, dict) and criteria.get("query")
        }
        if not queries:
            return 0
        # The indexing loop writes without waiting for a refresh: the queries below must
        # see the batch just written (a no-op for SQLite and for callers that refreshed).
        refresh: Any = getattr(index, "refresh", None)
        if callable(refresh):
            refresh()
        protector = keys if hasattr(keys, "protect") and hasattr(keys, "unprotect") else None
        registry = HoldRegistry(objects=objects, state=state, log=log, keys=protector)
        ids = list(dict.fromkeys(doc_ids))
        units: dict[str, tuple[str, str | None]] | None = None  # read once, when needed
        total = 0
        for hold_id, criteria in sorted(queries.items()):
            # Each hold on its own: one that fails (a query that cannot run, a record
            # that cannot be read) is flagged and the holds after it still hold theirs.
            try:
                total += _hold_one(index, objects, registry, hold_id, criteria, ids)
                if units is None:
                    units = _units(index, ids)
                total += _hold_family(objects, registry, hold_id, criteria, units)
            except NotFound:
                continue  # released and removed meanwhile
            except Exception as exc:
                flag_broken(registry, hold_id, exc)
        if total:
            logger.info("query_hold_applied_to_indexed_arrivals", versions=total)
        return total
    except Exception:  # a hook must not stop indexing; the holds-refresh job catches up
        logger.exception("query_hold_hook_failed", documents=len(doc_ids))
        return 0


def _hold_one(
    index: SearchIndex,
    objects: ObjectStore,
    registry: HoldRegistry,
    hold_id: str,
    criteria: dict[str, Any],
    ids: list[str],
) -> int:
    records: dict[str, StoredRecord] = {}
    for start in range(0, len(ids), _IDS_PER_SEARCH):
        chunk = ids[start : start + _IDS_PER_SEARCH]
        result = index.search(SearchRequest(
            q=str(criteria["query"]), scope_numbers=criteria.get("numbers"),
            ids=chunk, size=len(chunk),
        ))  # fmt: skip
        records.update(records_of_hits(objects, result))
    if not records:
        return 0
    return registry.hold_records(hold_id, records.values())


def _units(index: SearchIndex, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Document id -> (its message's ref, its business number), for the documents of
    ``ids`` that belong to a message (``unit_of`` as the index stores it)."""
    units: dict[str, tuple[str, str | None]] = {}
    for start in range(0, len(ids), _IDS_PER_SEARCH):
        chunk = ids[start : start + _IDS_PER_SEARCH]
        result = index.search(SearchRequest(ids=chunk, size=len(chunk)))
        for hit in result.hits:
            ref = hit.doc.get("target_ref") or hit.doc.get("message_ref")
            if ref:
                number = hit.doc.get("phone_number_id")
                units[hit.id] = (str(ref), None if number is None else str(number))
    return units


def _hold_family(
    objects: ObjectStore,
    registry: HoldRegistry,
    hold_id: str,
    criteria: dict[str, Any],
    units: dict[str, tuple[str, str | None]],
) -> int:
    """Hold the documents whose message this hold holds (after its query pass: a parent
    and its edit indexed in one batch, or an edit that arrived before its parent was
    indexed). Only query holds need it: other holds hold a parent when it is written, and
    the processor's hook holds its later family. One GET per document with a message."""
    numbers = criteria.get("numbers")
    records: list[StoredRecord] = []
    for rid, (ref, number) in units.items():
        if numbers is not None and number not in numbers:
            continue
        if not registry.holds_target(hold_id, ref):
            continue
        try:
            r = record_by_id(objects, rid)
        except NotFound:
            continue  # disposed since it was indexed
        if unit_of(r.header) == ref:
            records.append(r)
    return registry.hold_records(hold_id, records) if records else 0


def holds_selecting(
    index: SearchIndex,
    registry: HoldRegistry,
    records: Sequence[StoredRecord],
    *,
    indexed: bool,
    every_family: bool = True,
) -> tuple[dict[str, str], list[str]]:
    """Open holds whose *criteria* select one of ``records``, whether or not the hold has
    been applied to them yet (its item and slot lists fill in later: the processor's hook
    after the append, the follower's hook after indexing, the family pass): ``{hold id:
    why}``. The same tests the hooks make: the hold's number scope, its subject (any id of
    the record subject's person), its conversation, a held message of the record's family
    (one GET per record), a held version; a query runs over the records' index documents
    (``SearchRequest.ids``), so it needs them indexed: with ``indexed`` False a query hold
    is reported as not decidable yet (the caller keeps or defers, never guesses). Returns
    the selecting holds and the undecided ones. ``every_family`` False (a person's whole
    record set: one GET per record and hold would be too many) reads the held targets
    only of holds whose family pass may still miss a logged record (placing, applying,
    targets not backfilled yet); an open, applied hold's items already list them."""
    out: dict[str, str] = {}
    undecided: list[str] = []
    if not records:
        return out, undecided
    state = registry.state
    people = {s: set(person_subjects(state, s)) for s in {r.subject for r in records if r.subject}}
    refreshed = False
    for h in registry.open_holds():
        hold_id, scope = str(h["id"]), h.get("scope") or {}
        numbers = h.get("numbers")
        inside = [r for r in records if numbers is None or r.phone_number_id in numbers]
        if not inside:
            continue
        items = h.get("items") or {}
        subject, conversation = scope.get("subject"), scope.get("conversation")
        targets = every_family or bool(h.get("status") != HoldStatus.OPEN or h.get("applying")
                                       or not h.get("targets_complete"))  # fmt: skip
        for r in inside:
            unit = unit_of(r.header) if targets else None
            if ((subject and subject in people.get(r.subject or "", set()))
                    or (conversation and r.header.get("conversation") == conversation)
                    or item_id(r.key, r.version_id) in items
                    or (unit is not None and registry.holds_target(hold_id, unit))):
                out[hold_id] = f"hold {hold_id} selects record {r.record_id}"
                break
        query = scope.get("query")
        if hold_id in out or not query:
            continue
        if not indexed:
            undecided.append(hold_id)
            continue
        if not refreshed:  # the follower writes without waiting for a refresh
            refresh: Any = getattr(index, "refresh", None)
            if callable(refresh):
                refresh()
            refreshed = True
        ids = [r.record_id for r in inside]
        for start in range(0, len(ids), _IDS_PER_SEARCH):
            chunk = ids[start : start + _IDS_PER_SEARCH]
            result = index.search(SearchRequest(q=str(query), scope_numbers=numbers,
                                                ids=chunk, size=1))  # fmt: skip
            if result.total or result.hits:
                out[hold_id] = f"hold {hold_id}'s query selects a record"
                break
    return out, undecided
