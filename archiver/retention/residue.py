"""What ``archiver verify`` checks after erasures: nothing an erasure destroyed is left.

The log is the source (a restore of working state from a backup taken before an erasure
must show up here): each erasure's ``tombstone`` leaf names its tombstone object (the
subject pseudonym and record ids), and its ``key_shredded`` leaves name the destroyed data
keys and raw slots. An erasure counts once a ``key_shredded`` leaf points at its tombstone
(an erasure refused midway destroyed nothing and logged none). Findings:

* ``keys:erased_material``: a shredded data key still wrapped in ``keys/dk/<id>``, or a
  shredded raw slot still keyed in ``capkeys/<batch>`` (a restored backup: replay the
  ``key_shredded`` leaves, docs/keys.md);
* ``state:erased_copy``: a derived copy the erasure must have removed
  (:data:`archiver.retention.erasure.DERIVED_STATE`): the subject's contact-sync name while
  it has no new key, a parked fold item an erased record made, an erased record's media
  job;
* ``keys:erased_material`` too: a raw slot an erasure *kept* (``slots_kept``,
  ``late_slots_kept`` of a procedure marked in ``erasures-kept/``: a hold, an obligation,
  another number, a batch not logged yet) while it is still keyed: the erased person's
  delivery is readable there until ``settle_kept_slots`` destroys it (working state is
  the source: a kept slot has no leaf);
* ``index:erased_document``: an index document of an erased record that holds personal
  fields (a header-only document, as a rebuild writes for a shredded record, is fine).

:func:`replay_shredded` (``archiver erasure replay``) is the cure for restored key
material: it destroys again every data key and raw slot a ``key_shredded`` leaf names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from archiver.ingest.capture import batch_id_of
from archiver.keys.store import KeyStore
from archiver.keyspace import (
    CAPTURE_KEYS_PREFIX,
    ERASURES_PREFIX,
    INDEX_FOLDS_PREFIX,
    INDEX_NAMES_PREFIX,
    RECORDS_PREFIX,
    data_key_key,
    media_jobs_of,
    raw_key,
    subject_keys_key,
)
from archiver.ledger.entry import Entry, EntryKind, parse_entry
from archiver.ledger.ports import LogReader
from archiver.ledger.verify_objects import Finding, FindingKind
from archiver.records.model import RecordError
from archiver.retention.common import StoredRecord, read_stored_record
from archiver.retention.erasure import (
    drop_slot_key,
    purge_derived_state,
)
from archiver.store.errors import ObjectNotFound, StoreError
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.grants import QUOTING_KINDS
from search.port import SearchIndex

# Index fields that only a readable record fills (archiver.indexing.documents).
PERSONAL_FIELDS = frozenset({
    "text", "contact", "contact_user_id", "contact_username", "contact_profile_name",
    "contact_name", "from", "to", "edits", "reactions", "media_sha256",
})  # fmt: skip
_CHUNK = 1000


@dataclass
class _Erasure:
    subject: str
    record_ids: set[str]
    completed: bool = False


@dataclass
class _Seen:
    erasures: dict[str, _Erasure] = field(default_factory=dict)  # by tombstone sha256
    keys: set[str] = field(default_factory=set)
    slots: set[tuple[str, int]] = field(default_factory=set)  # (batch id, slot)
    tombstones: list[Entry] = field(default_factory=list)
    shredded_by: set[str] = field(default_factory=set)  # tombstone sha256 of key leaves


def _entries(log: LogReader) -> Iterator[Entry]:
    size = log.size()
    for start in range(0, size, _CHUNK):
        for data in log.entries(start, min(size, start + _CHUNK)):
            yield parse_entry(data)


def _scan(log: LogReader, objects: ObjectStore) -> _Seen:
    seen = _Seen()
    for e in _entries(log):
        if e.kind is EntryKind.TOMBSTONE and e.fields.get("reason") == "erasure":
            seen.tombstones.append(e)
        elif e.kind is EntryKind.KEY_SHREDDED:
            sha = e.fields.get("tombstone_sha256")
            if isinstance(sha, str):
                seen.shredded_by.add(sha)
            kid, slot = e.fields.get("key_id"), e.fields.get("slot")
            if isinstance(kid, str):
                seen.keys.add(kid)
            elif isinstance(slot, int) and e.key is not None:
                seen.slots.add((batch_id_of(e.key), slot))
    for t in seen.tombstones:
        if t.key is None or t.version_id is None:
            continue
        try:
            body = _obj(objects.get(t.key, t.version_id))
        except StoreError:
            continue  # verify_archive reports a missing or unreadable logged object
        if not body:
            continue  # altered: verify_archive reports the hash mismatch
        what = body.get("what") or {}
        sha = str(t.fields.get("sha256"))
        seen.erasures[sha] = _Erasure(str(what.get("subject")),
                                      {str(r) for r in what.get("record_ids") or []},
                                      completed=sha in seen.shredded_by)
    return seen


def erasure_residue(
    log: LogReader, objects: ObjectStore, state: StateStore, index: SearchIndex
) -> list[Finding]:
    """Every copy of erased data still present (see the module docstring)."""
    seen = _scan(log, objects)
    out: list[Finding] = []
    for kid in sorted(seen.keys):
        value = state.get(data_key_key(kid))
        if value is not None and "wrapped" in _obj(value.value):
            out.append(Finding(FindingKind.ERASED_KEY_MATERIAL, data_key_key(kid), None,
                               "shredded", "wrapped key present",
                               f"data key {kid} has a key_shredded leaf but is still stored"))
    for batch, slot in sorted(seen.slots):
        value = state.get(CAPTURE_KEYS_PREFIX + batch)
        if value is not None and str(slot) in (_obj(value.value).get("keys") or {}):
            out.append(Finding(FindingKind.ERASED_KEY_MATERIAL, CAPTURE_KEYS_PREFIX + batch,
                               None, "shredded", f"slot {slot} keyed",
                               f"raw slot {slot} has a key_shredded leaf but its key is stored"))
    out += _kept_slots(state)
    done = [e for e in seen.erasures.values() if e.completed]
    erased_ids = set().union(*(e.record_ids for e in done)) if done else set()
    out += _derived(state, done, erased_ids)
    out += _slot_quotes(objects, state, index, seen.slots, erased_ids)
    for record_id in sorted(erased_ids):
        doc = index.get(record_id)
        if doc is not None and PERSONAL_FIELDS & set(doc):
            out.append(Finding(FindingKind.ERASED_INDEXED, record_id, None, "header only",
                               ", ".join(sorted(PERSONAL_FIELDS & set(doc))),
                               f"the index still holds personal fields of erased record "
                               f"{record_id}"))
    return out


def _kept_slots(state: StateStore) -> list[Finding]:
    """The raw slots erasures kept and that are still keyed. Read from the procedures
    themselves, not their ``erasures-kept/`` markers: a procedure an earlier version
    finished kept slots with no marker (``settle_kept_slots`` marks it on its first run)."""
    out: list[Finding] = []
    for key in state.list(ERASURES_PREFIX):
        value = state.get(key)
        doc = _obj(value.value) if value is not None else {}
        for kept in [*(doc.get("slots_kept") or []), *(doc.get("late_slots_kept") or [])]:
            batch, slot = str(kept["batch"]), int(kept["slot"])
            if not _still_keyed(state, batch, slot):
                continue
            why = "; ".join(str(r) for r in kept.get("reasons") or []) or "kept"
            out.append(Finding(FindingKind.ERASED_KEY_MATERIAL, CAPTURE_KEYS_PREFIX + batch,
                               None, "shredded once nothing keeps it", f"slot {slot} kept",
                               f"raw slot {slot} of erasure {doc.get('id')} is kept ({why}): "
                               "the erased person's delivery is readable there until it "
                               "is destroyed (erasure-resume job, hold release)"))
    return out


def _slot_quotes(
    objects: ObjectStore, state: StateStore, index: SearchIndex, slots: set[tuple[str, int]],
    erased_ids: set[str],
) -> list[Finding]:
    """Subject-less records that quote a shredded raw slot (``unknown``, ``unprocessable``:
    a delivery the parser could not tie to one contact) must be as dead as the slot: their
    key destroyed, their index document gone (an erasure before this check existed left
    them under the business number's key). Other subjects' records of a shared slot stay:
    they belong to someone else."""
    if not slots:
        return []
    shredded = {(raw_key(b), s) for b, s in slots}
    out: list[Finding] = []
    for record in _readable_records(objects):
        raw = record.raw
        if raw is None or (raw[0], raw[2]) not in shredded:
            continue
        if record.header.get("kind") not in QUOTING_KINDS or record.subject is not None:
            continue  # a subject's record: its own erasure's (or someone else's)
        sealed = record.header.get("sealed") or {}
        kid = sealed.get("key_id") if isinstance(sealed, dict) else None
        value = state.get(data_key_key(kid)) if isinstance(kid, str) else None
        if value is not None and "wrapped" in _obj(value.value):
            out.append(Finding(FindingKind.ERASED_KEY_MATERIAL, record.key, record.version_id,
                               "shredded", f"key {kid} readable",
                               f"record {record.record_id} quotes shredded raw slot "
                               f"{raw[0]}#{raw[2]} and is still readable"))
        if record.record_id in erased_ids:
            continue  # an erasure purged it: its document is checked with the erased ones
        doc = index.get(record.record_id)
        if doc is not None and PERSONAL_FIELDS & set(doc):
            out.append(Finding(FindingKind.ERASED_INDEXED, record.record_id, None,
                               "header only", ", ".join(sorted(PERSONAL_FIELDS & set(doc))),
                               f"the index still holds personal fields of record "
                               f"{record.record_id}, which quotes shredded raw slot "
                               f"{raw[0]}#{raw[2]}"))
    return out


def _readable_records(objects: ObjectStore) -> Iterator[StoredRecord]:
    """Every record version that parses. An altered one is skipped here: the object
    check of ``verify_archive`` names it (``object:altered``), and one unreadable record
    must not stop the residue check of all the others."""
    for v in objects.list_versions(RECORDS_PREFIX):
        if v.is_delete_marker:
            continue
        try:
            yield read_stored_record(objects, v.key, v.version_id)
        except (ObjectNotFound, RecordError):
            continue


def _derived(state: StateStore, done: list[_Erasure], erased_ids: set[str]) -> list[Finding]:
    out: list[Finding] = []
    erased_subjects = {e.subject for e in done}
    for key in state.list(INDEX_NAMES_PREFIX):
        subject = key.rsplit("/", 1)[-1]
        if subject in erased_subjects and not _has_new_key(state, subject):
            out.append(Finding(FindingKind.ERASED_COPY, key, None, None, "name",
                               f"erased subject {subject} still has a contact name"))
    for key in state.list(INDEX_FOLDS_PREFIX):
        value = state.get(key)
        items = _json(value.value) if value is not None else None
        if not isinstance(items, list):
            continue
        # Only items an erased record made: a fold parked later for an erased target (a
        # status of an erased message, from a record under a new key) is new data.
        if any(isinstance(i, dict) and (i.get("data") or {}).get("record_id") in erased_ids
               for i in items):
            out.append(Finding(FindingKind.ERASED_COPY, key, None, None, "parked fold",
                               "a parked fold holds what an erased record made"))
    for record_id in sorted(erased_ids):
        for key in state.list(media_jobs_of(record_id)):
            out.append(Finding(FindingKind.ERASED_COPY, key, None, None, "media job",
                               f"a media job of erased record {record_id}"))
    return out


def _has_new_key(state: StateStore, subject: str) -> bool:
    """The subject came back after its erasure (a fresh key): a new name is new data."""
    value = state.get(subject_keys_key(subject))
    return value is not None and bool(_obj(value.value).get("current"))


def _obj(raw: bytes) -> dict[str, Any]:
    value = _json(raw)
    return value if isinstance(value, dict) else {}


def _json(raw: bytes) -> Any:
    """Parsed JSON, or None for bytes that are not (an altered object: verify_archive's
    finding, not this module's)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def replay_shredded(
    log: LogReader, objects: ObjectStore, state: StateStore, keys: KeyStore, index: SearchIndex
) -> dict[str, Any]:
    """After working state (or the index) was restored from a backup: destroy again every
    data key and raw slot a ``key_shredded`` leaf names, purge the completed erasures'
    derived copies and personal index documents again, and scrub the state store.
    Erasures whose intent is logged without any ``key_shredded`` leaf are listed, not
    replayed (a crash, or a hold that refused them midway: the procedure in working state,
    if it survived, says which; ``archiver erasure resume``)."""
    seen = _scan(log, objects)
    destroyed = [k for k in sorted(seen.keys) if keys.destroy(k)]
    slots = [f"{b}#{s}" for b, s in sorted(seen.slots) if _still_keyed(state, b, s)
             and drop_slot_key(state, b, s)]  # fmt: skip
    purged = 0
    stale: list[str] = []
    for erasure in seen.erasures.values():
        if not erasure.completed:
            continue
        if not _has_new_key(state, erasure.subject):
            purged += sum(purge_derived_state(state, erasure.subject,
                                              erasure.record_ids).values())
        for record_id in sorted(erasure.record_ids):
            doc = index.get(record_id)
            if doc is not None and PERSONAL_FIELDS & set(doc):
                stale.append(record_id)
    if stale:
        index.delete_ids(stale)
        for step in ("refresh", "force_merge_expunge"):
            call = getattr(index, step, None)
            if callable(call):
                call()
    scrub = getattr(state, "scrub", None)
    if callable(scrub):
        scrub()
    return {
        "keys_destroyed": destroyed,
        "capture_slots_destroyed": slots,
        "derived_values_purged": purged,
        "index_documents_deleted": len(stale),
        "intents_without_shredding": sorted(
            e.subject for e in seen.erasures.values() if not e.completed),
    }


def _still_keyed(state: StateStore, batch: str, slot: int) -> bool:
    value = state.get(CAPTURE_KEYS_PREFIX + batch)
    return value is not None and str(slot) in (_obj(value.value).get("keys") or {})
