"""GDPR erasure (Art. 17) by crypto-shredding: destroy the keys, keep the locked bytes.

``ErasureService.erase(phone_number_id, contact)``:

1. resolves the contact (wa_id or BSUID) to its subject pseudonym through the alias
   registry;
2. re-decides every record of the subject with the current policy set and asks
   ``policies.engine.erasure_check`` together with the open holds covering the subject or
   one of its raw delivery slots: a running obligation (e.g. FINRA 4511) or a hold refuses
   with 409 ``erasure_refused`` naming it (Art. 17(3)(b), 17(3)(e));
3. destroys the subject's data keys (``KeyStore.shred``; the store's own protection
   check runs too);
4. destroys the capture key of every raw delivery slot that mentions the subject. The
   processor records those as grants ``capgrants/<subject>/<batch id>`` (the slots in its value)
   (:func:`grant_slots`); each slot's wrapped key is removed from ``capkeys/<batch id>`` by
   compare-and-swap. Other slots of the same batch (other deliveries) keep their keys;
   other subjects' records stay readable (they are sealed under their own keys);
5. purges the index (the subject's documents, parked folds for them) and expunges deleted
   documents (``force_merge_expunge``);
6. writes a tombstone object and logs ``tombstone`` + one ``key_shredded`` leaf per
   destroyed key or slot (pseudonyms and object keys only).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from archiver.errors import Conflict, NotFound
from archiver.ingest.capture import CAPTURE_KEYS_PREFIX, raw_key
from archiver.ingest.ports import LogAppender
from archiver.keys.errors import KeyNotFound, KeyProtected
from archiver.keys.store import KeyStore
from archiver.ledger.entry import EntryKind, make_entry
from archiver.logs import get_logger
from archiver.records.model import iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.common import (
    StoredRecord,
    facts_of,
    live_versions,
    resolve_subject,
    tombstone_retention,
    write_tombstone,
)
from archiver.retention.holds import HoldRegistry
from archiver.retention.lookup import subject_records
from archiver.store.errors import PreconditionFailed
from archiver.store.port import LockMode, ObjectStore, StateStore
from policies.engine import erasure_check
from policies.model import Decision, RecordFacts
from search.port import SearchIndex

logger = get_logger("archiver.erasure")

CAPGRANTS_PREFIX = "capgrants/"
FOLDS_PREFIX = "index/folds/"  # archiver.indexing.follower parks folds here



def grant_slots(
    state: StateStore, subject: str | None, batch_id: str, slots: Iterable[int]
) -> None:
    """Record that raw delivery ``slots`` of ``batch_id`` mention ``subject``: one
    working-state value per (subject, batch), so a batch costs one write per subject, not
    one per delivery. Idempotent (a replay merges into what an earlier attempt wrote)."""
    wanted = sorted(set(slots))
    if not subject or not wanted:
        return
    key = f"{CAPGRANTS_PREFIX}{subject}/{batch_id}"
    for _ in range(20):
        current = state.get(key)
        have = set(json.loads(current.value)["slots"]) if current else set()
        if set(wanted) <= have:
            return
        value = json.dumps({"slots": sorted(have | set(wanted))}).encode()
        try:
            if current is None:
                state.put(key, value, if_absent=True)
            else:
                state.put(key, value, if_match=current.token)
            return
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{key}: too much contention")


def slot_grants(state: StateStore, subject: str) -> list[tuple[str, int]]:
    """``(batch id, slot)`` of every raw delivery slot that mentions ``subject``."""
    prefix = f"{CAPGRANTS_PREFIX}{subject}/"
    out: list[tuple[str, int]] = []
    for key in state.list(prefix):
        value = state.get(key)
        if value is None:
            continue
        batch_id = key[len(prefix) :]
        out.extend((batch_id, int(slot)) for slot in json.loads(value.value)["slots"])
    return out


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


class Appender(Protocol):
    def append(self, entries: list[bytes]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    subject: str
    records: list[StoredRecord]
    slots: list[tuple[str, int]]
    decisions: list[Decision]
    holds: list[str]


class ErasureService:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        log: Appender,
        keys: KeyStore,
        index: SearchIndex,
        pseudo: Pseudonymizer,
        policy: Decider,
        holds: HoldRegistry,
        lock_mode: LockMode,
        log_retention_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reader: LogAppender | None = None,
    ) -> None:
        self.reader = reader  # reads the log for the per-subject lookup; None: full scan
        self.objects = objects
        self.state = state
        self.log = log
        self.keys = keys
        self.index = index
        self.pseudo = pseudo
        self.policy = policy
        self.holds = holds
        self.lock_mode = lock_mode
        self.log_retention_days = log_retention_days
        self.clock = clock

    def plan(self, phone_number_id: str, contact: str) -> ErasurePlan:
        """What erasing ``contact`` would touch, and what stands in the way."""
        subject = resolve_subject(self.state, self.pseudo, phone_number_id, contact)
        records = [
            r for r in subject_records(self.objects, self.state, self.reader, subject)
            if r.phone_number_id == phone_number_id
        ]  # fmt: skip
        slots = slot_grants(self.state, subject)
        decisions = [self.policy.decision(facts_of(r.header)) for r in records]
        holds = self.holds.holds_covering(subject, _slot_names(slots))
        return ErasurePlan(subject, records, slots, decisions, holds)

    def erase(self, phone_number_id: str, contact: str, *, by: str) -> dict[str, Any]:
        """Erase or refuse. Raises NotFound (nothing archived for the contact), Conflict
        (``erasure_refused``: an obligation or a hold, named in the message)."""
        plan = self.plan(phone_number_id, contact)
        if not plan.records and not plan.slots:
            raise NotFound("nothing is archived for this contact at this business number",
                           code="subject_not_found")
        verdict = erasure_check(plan.decisions, plan.holds)
        if not verdict.allowed:
            raise Conflict(verdict.reason, code="erasure_refused",
                           details={"subject": plan.subject, "holds": plan.holds})
        slot_names = _slot_names(plan.slots)

        def guard(subject: str) -> None:
            # Re-checked right before destruction: a hold placed meanwhile wins.
            holds = self.holds.holds_covering(subject, slot_names)
            if holds:
                raise Conflict(f"legal hold {holds[0]} applies (GDPR Art. 17(3)(e))",
                               code="erasure_refused", details={"holds": holds})

        try:
            key_events = self.keys.shred(plan.subject, guard=guard)
        except KeyNotFound:
            key_events = []
        except KeyProtected as exc:
            raise Conflict(exc.message, code="erasure_refused", details=exc.details) from exc
        shredded_slots = [(b, s) for b, s in plan.slots if self._drop_slot_key(b, s)]
        # The grants stay: they are how the subject's records (still stored, now
        # unreadable) are found without a full scan (archiver.retention.lookup), e.g. by a
        # later hold. A second erasure finds those slots already shredded.
        record_ids = sorted({r.record_id for r in plan.records})
        removed = self.index.delete_ids(record_ids)
        self._drop_parked_folds(set(record_ids))
        # Deletes become visible to a merge only after a refresh; then merge them away so
        # the erased text leaves the segment files (ES: forcemerge only_expunge_deletes).
        for step in ("refresh", "force_merge_expunge"):
            call = getattr(self.index, step, None)
            if callable(call):
                call()
        tombstone = self._log(plan, key_events, shredded_slots, record_ids, by)
        logger.info("subject_erased", subject=plan.subject, records=len(record_ids))
        return {
            "subject": plan.subject,
            "records": len(record_ids),
            "keys_shredded": [e["key_id"] for e in key_events],
            "capture_slots_shredded": len(shredded_slots),
            "index_documents_deleted": removed,
            "tombstone": tombstone,
            "reason": verdict.reason,
        }

    def _drop_slot_key(self, batch_id: str, slot: int) -> bool:
        """Remove one slot's wrapped capture key from ``capkeys/<batch>`` (CAS)."""
        name = CAPTURE_KEYS_PREFIX + batch_id
        for _ in range(30):
            current = self.state.get(name)
            if current is None:
                return False  # batch disposed, or never keyed
            doc = json.loads(current.value)
            if str(slot) not in doc.get("keys", {}):
                return False
            doc["keys"] = {k: v for k, v in doc["keys"].items() if k != str(slot)}
            doc.setdefault("shredded", []).append(slot)
            try:
                self.state.put(name, json.dumps(doc, sort_keys=True).encode(),
                               if_match=current.token)
                return True
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{name}: too much contention")

    def _drop_parked_folds(self, record_ids: set[str]) -> None:
        for key in list(self.state.list(FOLDS_PREFIX)):
            if key.rsplit("/", 1)[-1] in record_ids:
                self.state.delete(key)

    def _log(
        self,
        plan: ErasurePlan,
        key_events: Sequence[dict[str, Any]],
        slots: Sequence[tuple[str, int]],
        record_ids: Sequence[str],
        by: str,
    ) -> str:
        now = self.clock()
        slot_refs: list[dict[str, Any]] = [{"key": raw_key(b), "slot": s} for b, s in slots]
        body = {
            "v": 1,
            "kind": "tombstone",
            "what": {"subject": plan.subject, "record_ids": list(record_ids),
                     "keys": [e["key_id"] for e in key_events], "capture_slots": slot_refs},
            "why": "erasure request (GDPR Art. 17); content destroyed by key destruction",
            "action": "crypto_shred",
            "by_role": by,
            "when": iso(now),
        }  # fmt: skip
        h = hashlib.sha256(f"{plan.subject}@{iso(now)}".encode()).hexdigest()
        retention = tombstone_retention(self.lock_mode, self.log_retention_days)
        t_key, t_version, t_sha, t_size = write_tombstone(
            self.objects, f"erasure/{h[:2]}/{h}", body, retention
        )
        entries = [
            make_entry(EntryKind.TOMBSTONE, time=now, key=t_key, version_id=t_version,
                       sha256=t_sha, size=t_size, retain_until=retention.retain_until,
                       subject=plan.subject, reason="erasure", records=len(record_ids)).data
        ]  # fmt: skip
        for e in key_events:
            entries.append(make_entry(
                EntryKind.KEY_SHREDDED, time=now, subject=plan.subject, key_id=e["key_id"],
                kind_of_key=e.get("kind_of_key", "subject"), tombstone_sha256=t_sha,
            ).data)  # fmt: skip
        for ref in slot_refs:
            versions = live_versions(self.objects, str(ref["key"]))
            entries.append(make_entry(
                EntryKind.KEY_SHREDDED, time=now, key=str(ref["key"]),
                version_id=versions[0] if versions else None, subject=plan.subject,
                slot=ref["slot"], kind_of_key="capture_slot", tombstone_sha256=t_sha,
            ).data)  # fmt: skip
        self.log.append(entries)
        return t_key


def _slot_names(slots: Sequence[tuple[str, int]]) -> list[str]:
    return [f"{raw_key(b)}#{s}" for b, s in slots]
