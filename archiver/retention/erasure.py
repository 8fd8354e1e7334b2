"""GDPR erasure (Art. 17) by crypto-shredding: destroy the keys, keep the locked bytes.

``ErasureService.erase(phone_number_id, contact)`` plans, then runs a resumable procedure.

Plan (nothing written; a refusal is ``erasure_refused`` naming the blocker):

1. resolve the contact (wa_id or BSUID) to its subject pseudonym (alias registry);
2. find the subject's records and the raw delivery slots that mention it (grants
   ``capgrants/<subject>/<batch>``, ``archiver.subjects.grants.grant_slots``), and the
   records of *other* subjects derived from those same slots (a history chunk spans
   several threads);
3. re-decide all of them with the current policy set: a running obligation on the
   subject's records, or on another subject's record from a shared slot (destroying the
   slot's key would destroy that record's raw evidence), or an open hold on the subject or
   one of its slots refuses (Art. 17(3)(b), 17(3)(e)).

Procedure, logged first (``erasures/<subject>/<id>`` in working state, then the steps in
order; each step is idempotent and its completion saved, so a redo after a crash at any
point finishes the rest, and every leaf is logged exactly once, ``once_since`` the log
size saved with the plan):

``intent``       a tombstone object naming the plan (subject, record ids, key ids, raw
                 slots; pseudonyms only) and its ``tombstone`` leaf, before anything is
                 destroyed: a restore of working state from a backup can find from the log
                 alone which keys an erasure meant to destroy (docs/keys.md);
``shred_keys``   ``KeyStore.shred`` (holds re-checked right before; a hold placed since the
                 plan wins: the procedure ends ``refused``, nothing destroyed);
``shred_slots``  each granted slot's wrapped capture key removed from ``capkeys/<batch>``;
``purge_index``  the subject's index documents deleted, then refresh and expunge: the
                 planned records, and the *late* ones (records of the person logged since
                 the plan began, sealed with a key ``shred_keys`` destroyed: the follower
                 may have indexed their text before the key died), whose raw slots lose
                 their capture keys (a slot shared with other people's records is decided
                 as a planned one; one a hold or an obligation keeps is named in
                 ``late_slots_kept``). A record sealed with a key created after the shred
                 is new data and stays;
``purge_state``  every derived copy in working state (:data:`DERIVED_STATE`), of the
                 planned and the late records;
``artifacts``    working-area artifacts naming the subject (export packages) deleted and
                 marked ``erased`` on their jobs (``JobService.drop_subject``); jobs whose
                 parameters name the subject (a subject access request's contact)
                 redacted and, unfinished, cancelled (``JobService.redact``);
``scrub``        the state store drops old values from its files (SQLite: WAL checkpoint
                 and truncate; ``secure_delete`` zeroes freed pages);
``log``          one ``key_shredded`` leaf per destroyed data key and per raw slot.

:meth:`ErasureService.resume_pending` finishes every procedure a crash left behind (the
scheduler runs it; ``erase`` runs it for the subject first).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from archiver.errors import Conflict, NotFound
from archiver.indexing.follower import indexed_size
from archiver.ingest.batch_status import BatchState
from archiver.ingest.capture import batch_id_of
from archiver.ingest.rawbatch import RawBatchError, parse_batch
from archiver.keys.envelope import KeyEncryptionKey
from archiver.keys.errors import KeyNotFound, KeyProtected, KeyShredded
from archiver.keys.store import KeyStore
from archiver.keyspace import (
    ALIAS_PREFIX,
    CAPGRANTS_PREFIX,
    CAPTURE_KEYS_PREFIX,
    COEXISTENCE_PREFIX,
    COEXISTENCE_VIEW_PREFIX,
    CONSENT_VIEW_PREFIX,
    CONVSUBJECTS_PREFIX,
    DATA_KEYS_PREFIX,
    DISPOSITION_PREFIX,
    ERASURE_TOMBSTONE_KIND,
    ERASURES_KEPT_PREFIX,
    ERASURES_OPEN_PREFIX,
    ERASURES_PREFIX,
    HOLDS_PREFIX,
    INDEX_ACTIVE_KEY,
    INDEX_CONSENT_PREFIX,
    INDEX_CURSOR_PREFIX,
    INDEX_FOLDS_PREFIX,
    INDEX_NAMES_PREFIX,
    KEY_GRANTS_PREFIX,
    KEYS_EPOCH_KEY,
    LEASES_PREFIX,
    LOG_PREFIX,
    MEDIA_JOBS_PREFIX,
    MEDIA_LOGGED_PREFIX,
    PENDING_INDEX_PREFIX,
    PENDING_PREFIX,
    PROC_PREFIX,
    SUBJECT_KEYS_PREFIX,
    TOKENS_PREFIX,
    capgrants_of,
    erasure_kept_key,
    erasure_key,
    erasure_open_key,
    erasures_of,
    media_jobs_of,
    raw_key,
    tombstone_name,
)
from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.records.model import Record, RecordError, iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.arrivals import holds_selecting
from archiver.retention.common import (
    StoredRecord,
    facts_of,
    iter_records,
    live_versions,
    resolve_subject,
    write_tombstone,
)
from archiver.retention.holds import HoldRegistry
from archiver.retention.subject_lookup import batch_records, subjects_records_indexed
from archiver.store.errors import ObjectNotFound, PreconditionFailed
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore
from archiver.subjects.identity import person_subjects
from archiver.whatsapp.change import delivery_numbers
from policies.engine import erasure_check
from policies.model import Decision, RecordFacts
from search.port import SearchIndex

logger = get_logger("archiver.erasure")

# The resume job lists ERASURES_OPEN_PREFIX (one marker per procedure not yet done or
# refused), not every procedure ever run, so it is cheap to run often.
RESUME_INTERVAL_S = 60.0  # how often the erasure-resume job looks for open procedures
_LATE_CHUNK = 1000  # log leaves read at a time when looking for late records

# Every working-state prefix that holds a copy derived from a subject's sealed content,
# and how erasure reaches it (tests/integration/retention/test_erasure_residue.py lists
# every prefix a rich archive writes and checks it is here or in KEPT_STATE).
DERIVED_STATE: dict[str, str] = {
    INDEX_NAMES_PREFIX: "the contact-sync name of the subject, every generation: deleted",
    INDEX_FOLDS_PREFIX: "parked folds keyed by an erased record, and fold items an erased record "
                  "made (an edit's text waiting for an unarchived original): deleted",
    MEDIA_JOBS_PREFIX: "media jobs of erased records (Meta media id, digest): deleted",
    DATA_KEYS_PREFIX: "wrapped data keys of the subject: replaced by a tombstone (shred)",
    SUBJECT_KEYS_PREFIX: "the subject's key list: current key cleared, shredded_at set",
    KEY_GRANTS_PREFIX: "capture keys granted to the subject: deleted with the keys (shred)",
    CAPTURE_KEYS_PREFIX: "wrapped capture key of each raw slot naming the subject: removed",
}
# Prefixes that stay, and why they hold nothing of the sealed content.
KEPT_STATE: dict[str, str] = {
    CAPGRANTS_PREFIX: "slot numbers per subject pseudonym: how its records are found later",
    CONVSUBJECTS_PREFIX: "conversation and subject pseudonyms (hold lookups)",
    ALIAS_PREFIX: "HMAC of an alias -> subject pseudonym (a returning contact)",
    INDEX_CONSENT_PREFIX: "consent state, from the records' clear headers",
    INDEX_CURSOR_PREFIX: "a leaf number",
    INDEX_ACTIVE_KEY: "the live generation's name",
    CONSENT_VIEW_PREFIX: "consent changes, from the records' clear headers",
    COEXISTENCE_VIEW_PREFIX: "per business number: last activity, history progress",
    COEXISTENCE_PREFIX: "per business number: sync requests",
    PROC_PREFIX: "per raw batch: status and leaf numbers (entries inline while logging)",
    PENDING_PREFIX: "raw batches not processed yet: object key and time",
    PENDING_INDEX_PREFIX: "a marker: the pending-batch index is complete",
    ERASURES_PREFIX: "the erasure procedures: pseudonyms, record and key ids",
    ERASURES_OPEN_PREFIX: "empty markers of unfinished erasure procedures (pseudonyms)",
    ERASURES_KEPT_PREFIX: "empty markers of erasures still keeping a shared raw slot",
    LOG_PREFIX: "the log's state, staging and checkpoint pointer (pseudonyms only)",
    TOKENS_PREFIX: "API token hashes",
    HOLDS_PREFIX: "the hold registry (a hold on the subject refuses the erasure)",
    DISPOSITION_PREFIX: "review queue and cursor: record ids",
    MEDIA_LOGGED_PREFIX: "blob keys whose leaf is logged",
    LEASES_PREFIX: "job leases",
    KEYS_EPOCH_KEY: "a counter of key destructions (key caches check it): no id, no key",
}

class ErasureStatus(StrEnum):
    """``status`` of ``erasures/<subject>/<id>`` (stored: the values never change)."""

    RUNNING = "running"  # written before anything is logged or destroyed; resumable
    REFUSED = "refused"  # a step refused midway (a hold placed meanwhile)
    DONE = "done"


BACKLOG_WAIT_S = 3.0  # an erasure request's wait for batches captured before it

STEPS = ("intent", "shred_keys", "shred_slots", "purge_index", "purge_state", "artifacts",
         "scrub", "log")



def slot_grants(state: StateStore, subject: str) -> list[tuple[str, int]]:
    """``(batch id, slot)`` of every raw delivery slot that mentions ``subject``."""
    prefix = capgrants_of(subject)
    out: list[tuple[str, int]] = []
    for key in state.list(prefix):
        value = state.get(key)
        if value is None:
            continue
        batch_id = key[len(prefix) :]
        out.extend((batch_id, int(slot)) for slot in json.loads(value.value)["slots"])
    return out


@dataclass(frozen=True, slots=True)
class SlotKeepers:
    """What keeps one raw delivery slot's capture key; falsy: nothing, the key may go."""

    holds: tuple[str, ...] = ()  # open holds covering the slot or selecting one of its records
    reasons: tuple[str, ...] = ()  # every reason, holds included (for the procedure)
    # Not decidable yet (its batch not fully logged, or a query hold while the index lags
    # behind it): the plan refuses ``erasure_pending``, a step keeps the slot for later.
    pending: str | None = None
    undecided: tuple[str, ...] = ()  # query holds that cannot be run on its records yet
    out_of_scope: bool = False  # the delivery concerns a number outside the requester's

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def as_kept(self, batch_id: str, slot: int) -> dict[str, Any]:
        return {"batch": batch_id, "slot": slot, "holds": list(self.holds),
                "reasons": list(self.reasons)}  # fmt: skip


# A finished batch's records and one past its last leaf (``batch_records``), per batch id.
_BatchCache = dict[str, tuple[list[StoredRecord], int] | None]


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    subject: str
    records: list[StoredRecord]
    slots: list[tuple[str, int]]
    decisions: list[Decision]
    holds: list[str]
    shared: list[StoredRecord]  # other subjects' records derived from the same raw slots
    shared_decisions: list[Decision]
    # Every subject id of the person (``archiver.subjects.identity.person_subjects``),
    # canonical first: each has its own keys, all are shredded.
    subjects: tuple[str, ...] = ()
    # The log's size when planning began: records logged from there on are not in
    # ``records`` and are looked for again once the keys are destroyed (``purge_index``).
    log_size: int | None = None


class ErasureService:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        log: LogAppender,
        keys: KeyStore,
        index: SearchIndex,
        pseudo: Pseudonymizer,
        policy: Decider,
        holds: HoldRegistry,
        lock_mode: LockMode,
        log_retention_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reader: LogAppender | None = None,
        crash_hook: Callable[[str], None] | None = None,
        kek: KeyEncryptionKey | None = None,
    ) -> None:
        # Opens a raw slot to read the numbers its delivery concerns (a scoped token's
        # check); None: every slot counts as out of any token's scope.
        self.kek = kek
        self._legacy_marked = False  # procedures kept without a marker looked for yet
        # How long a request waits for batches captured before it to be processed.
        self.backlog_wait_s = BACKLOG_WAIT_S
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
        # Crash-point tests raise here: "before:<step>" and "after:<step>" (work done,
        # completion not yet saved).
        self._crash = crash_hook or (lambda _point: None)
        # Working-area artifacts (export packages, reports) holding a subject's decrypted
        # content: ``JobService.drop_subject``, wired by ``archiver.retention.services``.
        self.artifact_droppers: list[Callable[[str], Sequence[str]]] = []
        # Jobs whose parameters name the subject (a subject access request keeps its
        # contact): ``(phone_number_id, subject ids) -> redacted job ids``, wired by the
        # runtime (``archiver.export.job.redact_subject_access``).
        self.job_redactors: list[Callable[[str, Sequence[str]], Sequence[str]]] = []

    # -- plan ---------------------------------------------------------------------------

    def plan(self, phone_number_id: str, contact: str) -> ErasurePlan:
        """What erasing ``contact`` would touch, and what stands in the way."""
        log_size = self.log.size()  # before the look-up: a later record is found again
        subject = resolve_subject(self.state, self.pseudo, phone_number_id, contact)
        subjects = tuple(person_subjects(self.state, subject))
        slots: list[tuple[str, int]] = []
        for member in subjects:
            slots += [s for s in slot_grants(self.state, member) if s not in slots]
        own, shared = self._records(subjects, slots)
        # A record of the subject with no number (a delivery the parser could not read,
        # naming the contact) is theirs too: the subject pseudonym is per number already.
        records = [r for r in own if r.phone_number_id in (phone_number_id, None)]
        decisions = [self.policy.decision(facts_of(r.header)) for r in records]
        shared_decisions = [self.policy.decision(facts_of(r.header)) for r in shared]
        names = _slot_names(slots)
        holds = sorted({h for m in subjects for h in self.holds.holds_covering(m, names)})
        return ErasurePlan(subject, records, slots, decisions, holds, shared, shared_decisions,
                           subjects, log_size)  # fmt: skip

    def _records(
        self, subjects: Sequence[str], slots: Sequence[tuple[str, int]]
    ) -> tuple[list[StoredRecord], list[StoredRecord]]:
        """The subject's records, and other subjects' records from the subject's raw slots
        (one pass: the grants' batches, else the full scan)."""
        shared_slots = {(raw_key(b), s) for b, s in slots}

        def from_slot(r: StoredRecord) -> bool:
            raw = r.raw
            return raw is not None and (raw[0], raw[2]) in shared_slots

        person = set(subjects)

        def keep(r: StoredRecord) -> bool:
            return r.subject in person or from_slot(r)

        found = None
        if self.reader is not None:
            found = subjects_records_indexed(
                self.objects, self.state, self.reader, sorted(person), keep=keep
            )
        if found is None:
            logger.info("subject_lookup_full_scan", subject=subjects[0])
            found = [r for r in iter_records(self.objects) if keep(r)]
        own = [r for r in found if r.subject in person]
        return own, [r for r in found if r.subject not in person]

    @staticmethod
    def _verdict(plan: ErasurePlan) -> tuple[bool, str]:
        verdict = erasure_check(plan.decisions, plan.holds)
        if not verdict.allowed:
            return False, verdict.reason
        for record, decision in zip(plan.shared, plan.shared_decisions, strict=True):
            other = erasure_check([decision], [])
            if not other.allowed:
                raw = record.raw
                where = f"{raw[0]}#{raw[2]}" if raw else "a shared raw delivery"
                return False, (f"raw delivery {where} also holds another data subject's "
                               f"record: {other.reason}")
        return True, verdict.reason

    # -- erase --------------------------------------------------------------------------

    def erase(
        self, phone_number_id: str, contact: str, *, by: str,
        numbers: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Erase or refuse. ``numbers`` is the requester's scope (None: every number).
        Raises NotFound (nothing archived for the contact), Conflict (``erasure_refused``:
        an obligation or a hold, named in the message; ``erasure_out_of_scope``: a raw slot
        to destroy also carries records of a number outside ``numbers``)."""
        started = self.clock()
        subject = resolve_subject(self.state, self.pseudo, phone_number_id, contact)
        resumed = []
        for key in self._unfinished(subject):  # a crashed attempt is this request's: finish it
            with contextlib.suppress(Conflict):
                resumed.append(self._run(key))
        if resumed:
            return resumed[-1]
        # A delivery captured before the request but not processed yet may carry the
        # person's messages: decided without it, it would be processed afterwards under a
        # fresh key and stay readable. Wait a moment for those batches, else defer.
        backlog = self._backlog_before(started)
        if backlog:
            raise Conflict(f"{len(backlog)} raw batch(es) captured before this request are "
                           "not processed yet and may carry this contact's messages; retry "
                           "the erasure shortly", code="erasure_pending",
                           details={"subject": subject})  # fmt: skip
        plan = self.plan(phone_number_id, contact)
        if not plan.records and not plan.slots:
            raise NotFound("nothing is archived for this contact at this business number",
                           code="subject_not_found")
        # Each slot to destroy is decided on what it carries now, by the holds' criteria
        # (not only the slots a hold has been applied to yet) over its other records.
        members = set(plan.subjects or (plan.subject,))
        batches: _BatchCache = {}
        keepers = [self._slot_keepers(b, s, members, numbers, batches)
                   for b, s in plan.slots if self._slot_keyed(b, s)]  # fmt: skip
        if any(k.out_of_scope for k in keepers):
            # Destroying a shared slot's key destroys every record's raw evidence in it:
            # a token may only do that to numbers it covers (read from the delivery body,
            # as the export reads it). Nothing about the other number is named, so a
            # scoped token learns no more than that one exists.
            raise Conflict(
                "a raw delivery of this contact also carries records of a business "
                "number this token does not cover; a token covering every number "
                "concerned must request this erasure",
                code="erasure_out_of_scope", details={"subject": plan.subject},
            )
        # The person's own records by the same criteria: a hold not applied to them yet
        # (a query hold placed while the index lags behind them) keeps them too.
        own_holds, own_undecided = holds_selecting(
            self.index, self.holds, plan.records, every_family=False,
            indexed=indexed_size(self.state) >= self._records_end(plan.records, batches))
        pending = next((k.pending for k in keepers if k.pending), None)
        if pending is None and own_undecided:
            pending = ("the index has not caught up with this contact's records: an open "
                       "query hold cannot be run on them yet")  # fmt: skip
        if pending is not None:
            # Never destroy a slot on an incomplete picture: nothing is done, retry later.
            # The waiting holds go in ``holds`` (never the message), so the route names
            # only those the requester's token covers, as for a refusal.
            undecided = sorted({h for k in keepers for h in k.undecided} | set(own_undecided))
            raise Conflict(f"{pending}; retry the erasure shortly", code="erasure_pending",
                           details={"subject": plan.subject, "holds": undecided})  # fmt: skip
        slot_holds = {h for k in keepers for h in k.holds} | set(own_holds)
        if slot_holds - set(plan.holds):
            plan = dataclasses.replace(plan, holds=sorted(set(plan.holds) | slot_holds))
        allowed, reason = self._verdict(plan)
        if not allowed:
            raise Conflict(reason, code="erasure_refused",
                           details={"subject": plan.subject, "holds": plan.holds})
        key = self._begin(plan, phone_number_id, by, reason, numbers)
        return self._run(key)

    def resume_pending(self) -> list[dict[str, Any]]:
        """Finish every procedure a crash left unfinished; their results (refusals skipped:
        the procedure is marked ``refused``)."""
        out = []
        for marker in self.state.list(ERASURES_OPEN_PREFIX):
            key = ERASURES_PREFIX + marker[len(ERASURES_OPEN_PREFIX):]
            value = self.state.get(key)
            if value is None or json.loads(value.value).get("status") != ErasureStatus.RUNNING:
                # A crash between the marker and the procedure (nothing was logged or
                # destroyed yet), or one after the end was saved: nothing left to do.
                self.state.delete(marker)
                continue
            with contextlib.suppress(Conflict):
                out.append(self._run(key))
        self.settle_kept_slots()
        return out

    def settle_kept_slots(self) -> list[dict[str, Any]]:
        """Destroy the capture key of every raw slot a done erasure kept (a hold, an
        obligation, a batch not logged yet) that nothing keeps any more, and log its
        ``key_shredded`` leaf. Run by the erasure-resume job and after a hold's release.
        Returns ``{"erasure", "batch", "slot"}`` of each slot destroyed now."""
        if not self._legacy_marked:
            self._mark_legacy_kept()
        out: list[dict[str, Any]] = []
        for marker in list(self.state.list(ERASURES_KEPT_PREFIX)):
            key = ERASURES_PREFIX + marker[len(ERASURES_KEPT_PREFIX):]
            try:
                out += self._settle(key, marker)
            except PreconditionFailed:
                continue  # the procedure changed meanwhile: the next run takes it up
        return out

    def _mark_legacy_kept(self) -> None:
        """Once per process: mark every procedure that keeps a slot and has no marker (an
        earlier version finished it: ``late_slots_kept`` came before the markers), so it
        is settled like the others. One listing of the procedures and a GET each."""
        for key in list(self.state.list(ERASURES_PREFIX)):
            value = self.state.get(key)
            if value is None:
                continue
            try:
                doc = json.loads(value.value)
            except ValueError:
                continue
            if (isinstance(doc, dict) and doc.get("id") and doc.get("subject")
                    and (doc.get("slots_kept") or doc.get("late_slots_kept"))):
                marker = erasure_kept_key(str(doc["subject"]), str(doc["id"]))
                if self.state.get(marker) is None:
                    self._mark_kept(doc)
        self._legacy_marked = True

    def _settle(self, key: str, marker: str) -> list[dict[str, Any]]:
        value = self.state.get(key)
        if value is None:
            self.state.delete(marker)
            return []
        doc: dict[str, Any] = json.loads(value.value)
        if doc.get("status") != ErasureStatus.DONE:
            return []  # the procedure finishes first (its log step), then this
        token = value.token
        members = set(doc.get("subjects") or [doc["subject"]])
        kept = [*(doc.get("slots_kept") or []), *(doc.get("late_slots_kept") or [])]
        settling = doc.get("settling")
        if settling is None:
            free = [[k["batch"], k["slot"]] for k in kept
                    if not self._keepers_now(k["batch"], k["slot"], members,
                                             doc.get("numbers"))]  # fmt: skip
            if not free:
                return []
            # Saved before anything is destroyed: a crash from here finishes this set,
            # and its leaves are logged exactly once (``once_since``).
            settling = {"size_before": self.log.size(), "slots": free}
            doc["settling"] = settling
            token = self.state.put(key, _dump(doc), if_match=token)
        dropped: list[dict[str, Any]] = []
        for batch_id, slot in settling["slots"]:
            if self._keepers_now(batch_id, slot, members, doc.get("numbers")):
                continue  # kept again meanwhile (a hold placed since the set was saved)
            if (shred := self._shred_slot(batch_id, slot)) is not None:
                dropped.append(shred)
        if dropped:
            self.log.append(self._slot_entries(doc, dropped, self.clock()),
                            once_since=int(settling["size_before"]))  # fmt: skip
            # The old ``capkeys/`` values (the wrapped slot keys) are still in SQLite's
            # WAL, as after the procedure's own shreds: scrub before ``settling`` goes, so
            # a scrub that fails is done again by the next run.
            self._scrub()
        gone = {(d["batch"], d["slot"]) for d in dropped}
        for name in ("slots_kept", "late_slots_kept"):
            if name in doc:
                doc[name] = [k for k in doc[name] if (k["batch"], k["slot"]) not in gone]
        doc["slots_shredded"] = [*doc.get("slots_shredded", []), *dropped]
        doc.pop("settling", None)
        self.state.put(key, _dump(doc), if_match=token)
        if not doc.get("slots_kept") and not doc.get("late_slots_kept"):
            self.state.delete(marker)
        if dropped:
            logger.info("erasure_kept_slots_settled", subject=doc["subject"], slots=len(dropped))
        return [{"erasure": doc["id"], "batch": d["batch"], "slot": d["slot"]} for d in dropped]

    def unfinished_count(self) -> int:
        """Erasure procedures begun and neither done nor refused (``/readyz``, metrics)."""
        return sum(1 for _ in self.state.list(ERASURES_OPEN_PREFIX))

    def _unfinished(self, subject: str | None) -> list[str]:
        prefix = erasures_of(subject) if subject else ERASURES_PREFIX
        pending = []
        for key in self.state.list(prefix):
            value = self.state.get(key)
            if value is not None and json.loads(value.value).get("status") == ErasureStatus.RUNNING:
                pending.append(key)
        return pending

    def _begin(self, plan: ErasurePlan, phone_number_id: str, by: str, reason: str,
               numbers: Sequence[str] | None = None) -> str:  # fmt: skip
        """Write the procedure (status ``running``) before anything is logged or destroyed."""
        now = self.clock()
        erasure_id = f"{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"
        members = plan.subjects or (plan.subject,)
        key_ids = [k for m in members
                   for k in (*self.keys.subject_key_ids(m), *self.keys.capture_keys_of(m))
                   if not self._is_shredded(k)]  # an earlier erasure's keys are logged already
        doc = {
            "v": 1,
            "id": erasure_id,
            "status": ErasureStatus.RUNNING,
            "done": [],
            "subject": plan.subject,
            "subjects": list(members),
            "phone_number_id": phone_number_id,
            "by": by,
            "reason": reason,
            "when": iso(now),
            "tombstone_until": iso(now + timedelta(days=self.log_retention_days)),
            "size_before": self.log.size(),
            "plan_log_size": plan.log_size,
            # With the subject's records, the subject-less ones of its slots (a delivery
            # naming several people): their key and slot die with it, so do their
            # index documents.
            "record_ids": sorted({r.record_id for r in plan.records}
                                 | {r.record_id for r in plan.shared if r.subject is None}),
            # Only slots still keyed: one an earlier erasure shredded is logged already.
            "slots": [[b, s] for b, s in plan.slots if self._slot_keyed(b, s)],
            "planned_keys": key_ids,
            # The requester's numbers (None: every number): a late shared slot carrying
            # another number's record keeps its key, as ``erasure_out_of_scope`` refuses
            # a planned one.
            "numbers": None if numbers is None else sorted(numbers),
        }
        key = erasure_key(plan.subject, erasure_id)
        # The marker first: a procedure that exists is always found by the resume job.
        self.state.put(erasure_open_key(plan.subject, erasure_id), b"",
                       if_absent=True)
        self.state.put(key, _dump(doc), if_absent=True)
        return key

    def _close(self, key: str) -> None:
        self.state.delete(ERASURES_OPEN_PREFIX + key[len(ERASURES_PREFIX):])

    def _run(self, key: str) -> dict[str, Any]:
        value = self.state.get(key)
        if value is None:
            raise NotFound(f"no erasure procedure {key}", code="erasure_not_found")
        doc: dict[str, Any] = json.loads(value.value)
        token = value.token
        for step in STEPS:
            if step in doc["done"]:
                continue
            self._crash(f"before:{step}")
            try:
                result = getattr(self, f"_step_{step}")(doc)
            except Conflict as exc:
                doc.update(status=ErasureStatus.REFUSED, refused=exc.message)
                self.state.put(key, _dump(doc), if_match=token)
                self._close(key)
                logger.warning("erasure_refused_midway", subject=doc["subject"], step=step)
                raise
            self._crash(f"after:{step}")
            doc.update(result)
            doc["done"] = [*doc["done"], step]
            token = self.state.put(key, _dump(doc), if_match=token)
        doc["status"] = ErasureStatus.DONE
        self.state.put(key, _dump(doc), if_match=token)
        self._close(key)
        logger.info("subject_erased", subject=doc["subject"], records=len(doc["record_ids"]))
        return {
            "subject": doc["subject"],
            "erasure_id": doc["id"],
            "records": len(doc["record_ids"]),
            "keys_shredded": [k["key_id"] for k in doc["keys_shredded"]],
            "capture_slots_shredded": len(doc["slots_shredded"]),
            # Shared slots a hold, an obligation or another number keeps (``slots_kept``,
            # ``late_slots_kept``) until nothing does (``settle_kept_slots``).
            "capture_slots_kept": len(doc.get("late_slots_kept") or [])
            + len(doc.get("slots_kept") or []),
            "index_documents_deleted": doc["index_documents_deleted"],
            "state_purged": doc["state_purged"],
            "tombstone": doc["tombstone"]["key"],
            "reason": doc["reason"],
        }

    # -- the steps (each idempotent; returns what to save) -------------------------------

    def _step_intent(self, doc: dict[str, Any]) -> dict[str, Any]:
        subject = doc["subject"]
        slot_refs = [{"key": raw_key(b), "slot": s} for b, s in doc["slots"]]
        body = {
            "v": 1,
            "kind": "tombstone",
            "what": {"subject": subject, "erasure_id": doc["id"],
                     "record_ids": doc["record_ids"], "keys": doc["planned_keys"],
                     "capture_slots": slot_refs},
            "why": "erasure request (GDPR Art. 17); content destroyed by key destruction",
            "action": "crypto_shred",
            "by_role": doc["by"],
            "when": doc["when"],
        }  # fmt: skip
        h = hashlib.sha256(f"{subject}@{doc['id']}".encode()).hexdigest()
        until = datetime.fromisoformat(doc["tombstone_until"].replace("Z", "+00:00"))
        t_key, t_version, t_sha, t_size = write_tombstone(
            self.objects, tombstone_name(ERASURE_TOMBSTONE_KIND, h), body,
            Retention(self.lock_mode, until),
        )
        entry = make_entry(
            EntryKind.TOMBSTONE, time=_when(doc), key=t_key, version_id=t_version,
            sha256=t_sha, size=t_size, retain_until=until, subject=subject,
            reason="erasure", records=len(doc["record_ids"]),
        ).data  # fmt: skip
        self.log.append([entry], once_since=int(doc["size_before"]))
        return {"tombstone": {"key": t_key, "version_id": t_version, "sha256": t_sha}}

    def _step_shred_keys(self, doc: dict[str, Any]) -> dict[str, Any]:
        subject = doc["subject"]
        slot_names = [f"{raw_key(b)}#{s}" for b, s in doc["slots"]]

        def guard(subject: str) -> None:
            # Re-checked right before destruction: a hold placed meanwhile wins.
            holds = self.holds.holds_covering(subject, slot_names)
            if holds:
                raise Conflict(f"legal hold {holds[0]} applies (GDPR Art. 17(3)(e))",
                               code="erasure_refused", details={"holds": holds})

        members = list(doc.get("subjects") or [subject])
        # Nothing is destroyed unless every subject id of the person may be: a hold or a
        # protection on one of them refuses the whole erasure.
        for member in members:
            guard(member)
            if self.keys.protections(member):
                raise Conflict(f"subject {member} is protected: "
                               f"{', '.join(sorted(self.keys.protections(member)))}",
                               code="erasure_refused", details={"subject": member})
        events: list[dict[str, Any]] = []
        for member in members:
            try:
                events += self.keys.shred(member, guard=guard)
            except KeyNotFound:
                continue
            except KeyProtected as exc:
                raise Conflict(exc.message, code="erasure_refused", details=exc.details) from exc
        # What is destroyed now, whether by this attempt or by one a crash interrupted.
        kinds = {e["key_id"]: e.get("kind_of_key", "subject") for e in events}
        own = {k for m in members for k in self.keys.subject_key_ids(m)}
        for kid in doc["planned_keys"]:
            kinds.setdefault(kid, "subject" if kid in own else "capture")
        shredded = [{"key_id": k, "kind_of_key": kinds[k]}
                    for k in sorted(kinds) if self._is_shredded(k)]
        return {"keys_shredded": shredded}

    def _is_shredded(self, key_id: str) -> bool:
        try:
            self.keys.get(key_id)
        except KeyShredded:
            return True
        except KeyNotFound:
            return False
        return False

    def _step_shred_slots(self, doc: dict[str, Any]) -> dict[str, Any]:
        # Re-decided right before each destruction, as ``shred_keys``' guard does: a hold
        # placed since the plan, or selecting a record written since, keeps the slot (the
        # keys are gone, so the erasure is no longer refused).
        out, kept = self._keep_or_shred(doc, [(b, n) for b, n in doc["slots"]])
        if kept:
            self._mark_kept(doc)
            logger.warning("erasure_slots_kept", subject=doc["subject"], slots=len(kept))
        return {"slots_shredded": out, "slots_kept": kept}

    def _keep_or_shred(
        self, doc: dict[str, Any], slots: list[tuple[str, int]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Each raw slot of the procedure ``doc`` decided now (``_keepers_now``): destroyed,
        or kept for what keeps it. Returns (shredded, kept) in the slots' order."""
        members = set(doc.get("subjects") or [doc["subject"]])
        shredded: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        batches: _BatchCache = {}
        for batch_id, slot in slots:
            if keepers := self._keepers_now(batch_id, slot, members, doc.get("numbers"),
                                            batches):  # fmt: skip
                kept.append(keepers.as_kept(batch_id, slot))
                continue
            if (shred := self._shred_slot(batch_id, slot)) is not None:
                shredded.append(shred)
        return shredded, kept

    def _backlog_before(self, started: datetime) -> list[str]:
        """Raw batches captured before ``started`` and not processed yet (the pending
        index), after waiting up to ``backlog_wait_s`` for them: processing normally
        takes well under a second, so only a stalled or far-behind processor defers."""
        deadline = time.monotonic() + self.backlog_wait_s
        while True:
            left = []
            for name in self.state.list(PENDING_PREFIX):
                batch_id = name[len(PENDING_PREFIX):]
                if _captured_at(batch_id) >= started:
                    continue  # captured since the request: new data
                value = self.state.get(PROC_PREFIX + batch_id)
                if value is not None and json.loads(value.value).get("status") == BatchState.DONE:
                    continue
                if not live_versions(self.objects, raw_key(batch_id)):
                    continue  # its capture failed (answered 503): no delivery to wait for
                left.append(batch_id)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.1)

    def _records_end(self, records: Sequence[StoredRecord], batches: _BatchCache) -> int:
        """One past the last leaf of ``records``' batches (the index must reach it before
        a query hold can be run on them). A record of no raw batch (an API send) counts
        as indexed once its document is in the index; else, and for a batch not finished,
        the log's size (conservative: that waits for the whole lag)."""
        end = 0
        for r in records:
            if r.raw is None:
                if self.index.get(r.record_id) is None:
                    return self.log.size()
                continue
            batch_id = batch_id_of(r.raw[0])
            cached = batches.get(batch_id)
            batch_end = cached[1] if cached is not None else self._batch_end(batch_id)
            if batch_end is None:
                return self.log.size()
            end = max(end, batch_end)
        return end

    def _batch_end(self, batch_id: str) -> int | None:
        """One past the last leaf of a finished batch (its ``proc/`` document: no record
        read); None while it is not ``done``."""
        value = self.state.get(PROC_PREFIX + batch_id)
        doc = json.loads(value.value) if value is not None else {}
        leaves = doc.get("leaves")
        if doc.get("status") != BatchState.DONE or not isinstance(leaves, list):
            return None
        return max((int(i) for i in leaves), default=-1) + 1

    def _mark_kept(self, doc: dict[str, Any]) -> None:
        """The marker ``settle_kept_slots`` lists (idempotent)."""
        self.state.put(erasure_kept_key(doc["subject"], doc["id"]), b"")

    def _slot_numbers(self, batch_id: str, slot: int) -> frozenset[str] | None:
        """The business numbers the slot's delivery concerns, read from its body as the
        export reads them (``delivery_numbers``); None when that cannot be told."""
        value = self.state.get(CAPTURE_KEYS_PREFIX + batch_id)
        blob = json.loads(value.value).get("keys", {}).get(str(slot)) if value else None
        versions = live_versions(self.objects, raw_key(batch_id))
        if self.kek is None or blob is None or not versions:
            return None
        try:
            opened = parse_batch(self.objects.get(raw_key(batch_id), versions[0]))
            body = opened.open(slot, self.kek.unwrap(base64.b64decode(blob)))
        except (ObjectNotFound, RawBatchError, ValueError, KeyError, IndexError):
            return None
        return delivery_numbers(body)

    def _slot_keepers(self, batch_id: str, slot: int, members: set[str],
                      numbers: Sequence[str] | None,
                      batches: _BatchCache | None = None) -> SlotKeepers:  # fmt: skip
        """What keeps a raw slot's capture key, decided on the records the slot carries
        *now*, not on what the holds have been applied to so far: a delivery concerning a
        number outside the requester's ``numbers`` (read from the raw body); an open hold
        covering the slot, or whose criteria (subject, conversation, held message, query)
        select one of the slot's records of other people; a running obligation on one of
        those (Art. 17(3)(b), (e)). Not decidable (``pending``) while the slot's batch is
        not fully logged (its records are not all known and the hold hooks have not run
        on them), or while the index lags behind it and a query hold is open. ``batches``
        keeps a finished batch's records for the other slots of one pass."""
        reasons: list[str] = []
        out_of_scope = False
        if numbers is not None:
            concerns = self._slot_numbers(batch_id, slot)
            if concerns is None or not concerns <= set(numbers):
                out_of_scope = True
                reasons.append("the delivery concerns a business number outside the "
                               "requester's scope, or one that cannot be told")  # fmt: skip
        holds = set(self.holds.holds_covering(None, _slot_names([(batch_id, slot)])))
        if batches is not None and batches.get(batch_id) is not None:
            found = batches[batch_id]
        else:
            found = batch_records(self.objects, self.state, self.log, batch_id)
            if batches is not None:
                batches[batch_id] = found
        pending: str | None = None
        undecided: list[str] = []
        if found is None:
            pending = (f"raw batch {batch_id} is not fully logged yet: the records of its "
                       f"slot {slot} are not all known")  # fmt: skip
        else:
            records, end = found
            key = raw_key(batch_id)
            others = [r for r in records if r.subject not in members
                      and r.raw is not None and (r.raw[0], r.raw[2]) == (key, slot)]
            selecting, undecided = holds_selecting(
                self.index, self.holds, others, indexed=indexed_size(self.state) >= end)
            holds |= set(selecting)
            if undecided:
                pending = (f"the index has not caught up with raw batch {batch_id}: an "
                           "open query hold cannot be run on its records yet")  # fmt: skip
            for r in others:
                verdict = erasure_check([self.policy.decision(facts_of(r.header))], [])
                if not verdict.allowed:
                    reasons.append(f"record {r.record_id}: {verdict.reason}")
        return SlotKeepers(
            holds=tuple(sorted(holds)),
            reasons=(*(f"hold {h}" for h in sorted(holds)), *reasons,
                     *((pending,) if pending else ())),
            pending=pending, undecided=tuple(sorted(undecided)),
            out_of_scope=out_of_scope,
        )  # fmt: skip

    def _slot_keyed(self, batch_id: str, slot: int) -> bool:
        current = self.state.get(CAPTURE_KEYS_PREFIX + batch_id)
        return current is not None and str(slot) in json.loads(current.value).get("keys", {})

    def _drop_slot_key(self, batch_id: str, slot: int) -> bool:
        return drop_slot_key(self.state, batch_id, slot)

    def _keepers_now(self, batch_id: str, slot: int, members: set[str],
                     numbers: Sequence[str] | None,
                     batches: _BatchCache | None = None) -> SlotKeepers | None:  # fmt: skip
        """What keeps a slot that still has its key, decided right before it would be
        destroyed; None when its key is gone already or nothing keeps it."""
        if not self._slot_keyed(batch_id, slot):
            return None
        keepers = self._slot_keepers(batch_id, slot, members, numbers, batches)
        return keepers or None

    def _shred_slot(self, batch_id: str, slot: int) -> dict[str, Any] | None:
        """Drop the slot's capture key; what was destroyed (the raw batch's live version
        names it in the ``key_shredded`` leaf), or None when the key was gone already."""
        if not self._drop_slot_key(batch_id, slot):
            return None
        versions = live_versions(self.objects, raw_key(batch_id))
        return {"batch": batch_id, "slot": slot, "version_id": versions[0] if versions else None}

    def _late_records(self, doc: dict[str, Any]) -> tuple[list[str], list[tuple[str, int]]]:
        """The person's records logged since the plan began and sealed with a key destroyed
        by now (ids), and the raw slots they came from. The plan fixed ``record_ids``;
        a record logged after it was sealed with the same key while it lived, and the
        follower may have indexed (and parked folds of) its text. Run after
        ``shred_keys``: a record sealed with a key created since (a new message after the
        erasure) is new data and is not listed."""
        start = doc.get("plan_log_size")
        start = int(doc["size_before"] if start is None else start)
        members = set(doc.get("subjects") or [doc["subject"]])
        planned = set(doc["record_ids"])
        late: set[str] = set(doc.get("late_record_ids") or [])
        slots: set[tuple[str, int]] = set()
        end = self.log.size()
        for begin in range(start, end, _LATE_CHUNK):
            for data in self.log.entries(begin, min(end, begin + _LATE_CHUNK)):
                entry = parse_entry(data)
                if entry.kind is not EntryKind.RECORD or entry.key is None:
                    continue
                if entry.fields.get("record_id") in planned:
                    continue
                try:
                    body = self.objects.get(entry.key, str(entry.version_id))
                    record = Record.parse(body)
                except (ObjectNotFound, RecordError):
                    continue  # disposed since: nothing of it to find
                header = record.header
                stored = StoredRecord(entry.key, str(entry.version_id), header,
                                      record.sha256, len(body))  # fmt: skip
                raw = stored.raw
                slot = (batch_id_of(raw[0]), raw[2]) if raw else None
                if header.get("subject") not in members:
                    continue
                sealed = header.get("sealed")
                if not isinstance(sealed, dict) or not isinstance(sealed.get("key_id"), str):
                    continue  # nothing sealed: nothing decrypted from it
                if record.record_id in late or self._is_shredded(record.key_id):
                    late.add(record.record_id)
                    if slot is not None:
                        slots.add(slot)
        return sorted(late), sorted(slots)

    def _step_purge_index(self, doc: dict[str, Any]) -> dict[str, Any]:
        late, late_slots = self._late_records(doc)
        # A late record's raw slot holds the same text: its capture key goes too, decided
        # as a planned one is in ``shred_slots`` (``_slot_keepers``): it goes unless a hold,
        # an obligation or another number keeps the other records' raw evidence, or its
        # batch is not decidable yet; then it stays, named in ``late_slots_kept`` (the keys
        # are already destroyed, so the erasure cannot be refused any more) until nothing
        # keeps it (``settle_kept_slots``).
        shredded = list(doc.get("slots_shredded") or [])
        done = {(s["batch"], s["slot"]) for s in [*shredded, *(doc.get("slots_kept") or [])]}
        late_shredded, kept = self._keep_or_shred(
            doc, [(b, n) for b, n in late_slots if (b, n) not in done]
        )
        shredded += late_shredded
        if late:
            logger.info("erasure_late_records", subject=doc["subject"], records=len(late),
                        slots=len(late_slots))
        if kept:
            self._mark_kept(doc)
            logger.warning("erasure_late_slots_kept", subject=doc["subject"],
                           slots=len(kept))  # fmt: skip
        removed = self.index.delete_ids(sorted(set(doc["record_ids"]) | set(late)))
        # Deletes become visible to a merge only after a refresh; then merge them away so
        # the erased text leaves the segment files (ES: forcemerge only_expunge_deletes;
        # SQLite: FTS optimize, WAL checkpoint, VACUUM).
        for step in ("refresh", "force_merge_expunge"):
            call = getattr(self.index, step, None)
            if callable(call):
                call()
        return {"index_documents_deleted": removed + int(doc.get("index_documents_deleted", 0)),
                "late_record_ids": late, "slots_shredded": shredded, "late_slots_kept": kept}

    def _step_purge_state(self, doc: dict[str, Any]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        erased = set(doc["record_ids"]) | set(doc.get("late_record_ids") or [])
        for member in doc.get("subjects") or [doc["subject"]]:
            for name, n in purge_derived_state(self.state, member, erased).items():
                counts[name] = counts.get(name, 0) + n
        return {"state_purged": counts}

    def _step_artifacts(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Delete every working-area artifact naming one of the subject's ids (an export
        package decrypted their content outside the locked bucket)."""
        dropped = 0
        members = list(doc.get("subjects") or [doc["subject"]])
        for member in members:
            for drop in self.artifact_droppers:
                dropped += len(drop(member))
        redacted = 0
        for redact in self.job_redactors:
            redacted += len(redact(str(doc["phone_number_id"]), members))
        return {"artifacts_dropped": dropped, "jobs_redacted": redacted}

    def _step_scrub(self, doc: dict[str, Any]) -> dict[str, Any]:
        self._scrub()
        return {}

    def _scrub(self) -> None:
        scrub = getattr(self.state, "scrub", None)  # SQLite keeps old values in its WAL
        if callable(scrub):
            scrub()

    def _step_log(self, doc: dict[str, Any]) -> dict[str, Any]:
        when, subject = _when(doc), doc["subject"]
        t_sha = doc["tombstone"]["sha256"]
        entries = [
            make_entry(EntryKind.KEY_SHREDDED, time=when, subject=subject, key_id=k["key_id"],
                       kind_of_key=k["kind_of_key"], tombstone_sha256=t_sha).data
            for k in doc["keys_shredded"]
        ]  # fmt: skip
        entries += self._slot_entries(doc, doc["slots_shredded"], when)
        if entries:
            self.log.append(entries, once_since=int(doc["size_before"]))
        return {}

    @staticmethod
    def _slot_entries(doc: dict[str, Any], slots: Sequence[dict[str, Any]],
                      when: datetime) -> list[bytes]:  # fmt: skip
        """One ``key_shredded`` leaf per destroyed raw slot, naming the tombstone."""
        return [make_entry(
            EntryKind.KEY_SHREDDED, time=when, key=raw_key(s["batch"]),
            version_id=s["version_id"], subject=doc["subject"], slot=s["slot"],
            kind_of_key="capture_slot", tombstone_sha256=doc["tombstone"]["sha256"],
        ).data for s in slots]  # fmt: skip


def _captured_at(batch_id: str) -> datetime:
    """A batch id starts with its capture time (``archiver.ingest.capture``); an id that
    does not parse counts as captured long ago (waited for, never skipped)."""
    try:
        return datetime.strptime(batch_id.split("Z-")[0], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def drop_slot_key(state: StateStore, batch_id: str, slot: int) -> bool:
    """Remove one slot's wrapped capture key from ``capkeys/<batch>`` (CAS). True when the
    slot's key is gone by erasure (this call, or an earlier attempt's)."""
    name = CAPTURE_KEYS_PREFIX + batch_id
    for _ in range(30):
        current = state.get(name)
        if current is None:
            return False  # batch disposed, or never keyed
        doc = json.loads(current.value)
        if str(slot) not in doc.get("keys", {}):
            return slot in doc.get("shredded", [])
        doc["keys"] = {k: v for k, v in doc["keys"].items() if k != str(slot)}
        doc.setdefault("shredded", []).append(slot)
        try:
            state.put(name, json.dumps(doc, sort_keys=True).encode(), if_match=current.token)
            return True
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{name}: too much contention")


def purge_derived_state(state: StateStore, subject: str, record_ids: set[str]) -> dict[str, int]:
    """Delete every working-state copy derived from the subject's sealed content
    (:data:`DERIVED_STATE`, key material aside): its contact-sync name in every index
    generation, parked folds keyed by its records or made by them, its records' media jobs.
    Idempotent. Returns how many values each prefix lost."""
    counts = {INDEX_NAMES_PREFIX: 0, INDEX_FOLDS_PREFIX: 0, MEDIA_JOBS_PREFIX: 0}
    for key in list(state.list(INDEX_NAMES_PREFIX)):
        if key.rsplit("/", 1)[-1] == subject:
            state.delete(key)
            counts[INDEX_NAMES_PREFIX] += 1
    for key in list(state.list(INDEX_FOLDS_PREFIX)):
        if key.rsplit("/", 1)[-1] in record_ids:
            state.delete(key)
            counts[INDEX_FOLDS_PREFIX] += 1
        elif _drop_fold_items(state, key, record_ids):
            counts[INDEX_FOLDS_PREFIX] += 1
    for record_id in sorted(record_ids):
        for key in list(state.list(media_jobs_of(record_id))):
            state.delete(key)
            counts[MEDIA_JOBS_PREFIX] += 1
    return counts


def _drop_fold_items(state: StateStore, key: str, record_ids: set[str]) -> bool:
    """Remove from one parked fold list the items erased records made (CAS)."""
    for _ in range(20):
        current = state.get(key)
        if current is None:
            return False
        items = json.loads(current.value)
        kept = [i for i in items if (i.get("data") or {}).get("record_id") not in record_ids]
        if len(kept) == len(items):
            return False
        try:
            if kept:
                state.put(key, json.dumps(kept).encode(), if_match=current.token)
            else:
                state.delete(key, if_match=current.token)
            return True
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{key}: too much contention")


def _when(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(doc["when"]).replace("Z", "+00:00"))


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _slot_names(slots: Sequence[tuple[str, int]]) -> list[str]:
    return [f"{raw_key(b)}#{s}" for b, s in slots]
