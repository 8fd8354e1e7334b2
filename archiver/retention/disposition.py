"""Disposition: delete each expired, unheld object version, by version id, and say so.

One replica at a time (``Lease("disposition")``). The run does not walk the store: it
folds the proof log (``archiver.retention.expiry``) into each object version's latest
logged retain-until (its ``raw``/``record``/``media`` leaf, then any
``retention_extended``), minus versions with a ``disposed`` leaf, and looks only at the
*candidates* whose logged date has passed (or that logged none). For each candidate the
store is the truth: ``stat`` it (gone: skipped), keep it when its lock has not passed or it
carries a legal hold or an open hold of ours; for a record read its header and let the
record's *current* policy decide (``disposition.action``): ``delete`` deletes it;
``review`` queues it in ``disposition/reviews/<record id>`` until one (or, with
``two_person_approval``, two different) approvers approve, then the next run deletes it.
So the report's ``held`` counts candidates only (versions the log says are expired), and
``not_expired`` the versions whose logged retain-until is ahead (counted from the log, not
``stat``-ed) plus candidates whose store lock has not passed; ``candidates`` says how many
versions were looked at.

Deleting one version, in this order so that a crash anywhere is repaired by the next run:

1. a tombstone object ``tombstones/<kind>/<h[:2]>/<h>`` (``h`` = SHA-256 of
   ``key@version``; write-once, a replay finds its own): what, why, which policy, when;
2. two log leaves: ``tombstone`` (naming the tombstone object) and ``disposed`` (naming
   the deleted version, with its SHA-256 and the tombstone's), so ``verify`` expects the
   version to be gone and the tombstone to be there;
3. ``delete_version`` (no delete marker: a version-id delete removes the version);
4. the record's index document (``index.delete_ids``).

A crash between 2 and 3 leaves a ``disposed`` leaf for a present version (verify reports
``object:disposed_present``) until the next run deletes it: ``disposition/cursor`` keeps
the log size at which the last complete run started, and ``disposed`` leaves from there on
are candidates again (plus those such a run found present but held, listed in the cursor);
a replayed run may log the two leaves again (the log tolerates a duplicate).

Raw capture batches go once processed (``proc/<batch>`` is ``done``), past their own
retain-until, and when every record version the batch wrote or reused (the ``record``
leaves among the batch's leaves) is gone: disposed in this run or absent from the store.
Conservative: a record reused by a later delivery keeps the raw batch as well. Their
capture keys (``capkeys/<batch>``) go with them. Media blobs go when their own
retain-until has passed and they are unheld.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from archiver.errors import Conflict, NotFound
from archiver.ledger.entry import EntryKind, make_entry
from archiver.logs import get_logger
from archiver.records.model import iso
from archiver.retention.common import (
    facts_of,
    ident_hash,
    read_record,
    tombstone_retention,
    write_tombstone,
)
from archiver.retention.expiry import Candidate, candidates, leaf_runs, record_refs
from archiver.retention.holds import HoldRegistry, item_id
from archiver.store.errors import ObjectNotFound, PreconditionFailed
from archiver.store.port import LockMode, ObjectInfo, ObjectStore, StateStore
from policies.model import Decision, RecordFacts
from search.port import SearchIndex

logger = get_logger("archiver.disposition")

REVIEWS_PREFIX = "disposition/reviews/"
CAPKEYS_PREFIX = "capkeys/"  # archiver.ingest.capture.CAPTURE_KEYS_PREFIX
PROC_PREFIX = "proc/"  # archiver.ingest.processor.PROC_PREFIX
CURSOR_KEY = "disposition/cursor"  # log size at the start of the last complete run


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


class LogAccess(Protocol):
    def append(self, entries: list[bytes]) -> list[int]: ...

    def size(self) -> int: ...

    def entries(self, start: int, end: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Disposed:
    key: str
    version_id: str
    kind: str  # record | raw | media
    policy: str | None
    reason: str


@dataclass
class DispositionReport:
    dry_run: bool
    disposed: list[Disposed] = field(default_factory=list)
    queued_for_review: list[str] = field(default_factory=list)
    held: int = 0  # candidates only (see the module docstring)
    not_expired: int = 0  # logged as locked + candidates the store still locks
    candidates: int = 0  # versions the log named for a look
    ran: bool = True  # False: another replica holds the lease

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "ran": self.ran,
            "disposed": [asdict(d) for d in self.disposed],
            "queued_for_review": self.queued_for_review,
            "held": self.held,
            "not_expired": self.not_expired,
            "candidates": self.candidates,
        }


@dataclass
class _RunState:
    """What one run learnt: versions gone (disposed now or absent), versions staying."""

    gone: set[tuple[str, str]] = field(default_factory=set)
    staying: set[tuple[str, str]] = field(default_factory=set)
    kept_redo: list[Candidate] = field(default_factory=list)

    def stays(self, c: Candidate) -> None:
        self.staying.add((c.key, c.version_id))
        if c.redo:
            self.kept_redo.append(c)


class DispositionJob:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        log: LogAccess,
        index: SearchIndex,
        policy: Decider,
        holds: HoldRegistry,
        lock_mode: LockMode,
        log_retention_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects = objects
        self.state = state
        self.log = log
        self.index = index
        self.policy = policy
        self.holds = holds
        self.lock_mode = lock_mode
        self.log_retention_days = log_retention_days
        self.clock = clock

    # -- the run ------------------------------------------------------------------------
    def run(self, *, dry_run: bool = False) -> DispositionReport:
        """One pass over the log's candidates: records, then raw batches, then media. Takes
        the lease itself unless ``dry_run`` (which also leaves the cursor alone)."""
        from archiver.jobs.lease import Lease

        report = DispositionReport(dry_run=dry_run)
        lease = Lease(self.state, "disposition", ttl=600)
        if not dry_run and not lease.acquire():
            report.ran = False
            return report
        try:
            self._run(report, dry_run)
        finally:
            if not dry_run:
                lease.release()
        return report

    def _run(self, report: DispositionReport, dry_run: bool) -> None:
        now = self.clock()
        held = self.holds.held_items()
        since, kept_before = self._cursor()
        found = candidates(self.log, now, redo_since=since)
        listed = {(c.key, c.version_id) for c in found.versions}
        todo = [*found.versions, *(c for c in kept_before if (c.key, c.version_id) not in listed)]
        report.candidates = len(todo)
        report.not_expired = found.locked
        run = _RunState()
        record_ids: list[str] = []
        for c in (c for c in todo if c.kind == "record"):
            record_id = self._record(c, report, dry_run, held, now, run)
            if record_id is not None:
                record_ids.append(record_id)
        if record_ids:
            self.index.delete_ids(record_ids)
        for c in (c for c in todo if c.kind == "raw"):
            self._raw(c, report, dry_run, held, now, run)
        for c in (c for c in todo if c.kind == "media"):
            self._media(c, report, dry_run, held, now, run)
        if not dry_run:
            self._save_cursor(found.log_size, run.kept_redo)
            # Also finishes earlier erasures: Elasticsearch keeps soft-deleted documents
            # until its retention lease moves on (~30 s), so an expunge right after the
            # delete may leave them; the next periodic run removes them from the segments.
            for step in ("refresh", "force_merge_expunge"):
                call = getattr(self.index, step, None)
                if callable(call):
                    call()

    def _look(
        self, c: Candidate, report: DispositionReport, held: set[str], now: datetime,
        run: _RunState,
    ) -> ObjectInfo | None:
        """The store's word on a candidate: None when it is gone or must stay."""
        try:
            info = self.objects.stat(c.key, c.version_id)
        except ObjectNotFound:
            run.gone.add((c.key, c.version_id))
            return None  # disposed (or removed) already
        why = self._keep_reason(info, held, now)
        if why is None:
            return info
        report.held += why == "held"
        report.not_expired += why == "not_expired"
        run.stays(c)
        return None

    def _record(
        self, c: Candidate, report: DispositionReport, dry_run: bool, held: set[str],
        now: datetime, run: _RunState,
    ) -> str | None:
        info = self._look(c, report, held, now, run)
        if info is None:
            return None
        try:
            r = read_record(self.objects, c.key, c.version_id)
        except ObjectNotFound:
            run.gone.add((c.key, c.version_id))
            return None
        decision = self.policy.decision(facts_of(r.header))
        if decision.disposition.action == "review" and not self._approved(
            r.record_id, r.key, r.version_id, decision, dry_run
        ):
            report.queued_for_review.append(r.record_id)
            run.stays(c)
            return None
        reason = (f"retain-until {iso(info.retention.retain_until) if info.retention else '-'}"
                  f" passed; policy {decision.governing} says {decision.disposition.action}")
        item = Disposed(r.key, r.version_id, "record", decision.governing, reason)
        report.disposed.append(item)
        run.gone.add((c.key, c.version_id))  # a dry run answers as if it had deleted it
        if dry_run:
            return None
        self._dispose(item, r.sha256, r.size)
        return r.record_id

    def _raw(
        self, c: Candidate, report: DispositionReport, dry_run: bool, held: set[str],
        now: datetime, run: _RunState,
    ) -> None:
        batch_id = c.key.rsplit("/", 1)[-1]
        proc = self.state.get(PROC_PREFIX + batch_id)
        doc = json.loads(proc.value) if proc is not None else {}
        if doc.get("status") != "done" or not isinstance(doc.get("leaves"), list):
            run.stays(c)
            return  # not processed yet: its records may still come
        info = self._look(c, report, held, now, run)
        if info is None:
            if (c.key, c.version_id) in run.gone and not dry_run:
                # Gone already: a run that crashed between deleting the batch and its keys
                # (its ``disposed`` leaf makes it a candidate again) finishes here.
                self._drop_capkeys(c.key, batch_id)
            return
        if self._records_remain([int(i) for i in doc["leaves"]], run):
            run.stays(c)
            return
        item = Disposed(c.key, c.version_id, "raw", None,
                        "retain-until passed and no remaining record came from it")
        report.disposed.append(item)
        if not dry_run:
            self._dispose(item, info.sha256, info.size)
            self._drop_capkeys(c.key, batch_id)

    def _drop_capkeys(self, key: str, batch_id: str) -> None:
        """The batch's wrapped capture keys, once no version of the batch is left."""
        if not any(x.key == key and not x.is_delete_marker
                   for x in self.objects.list_versions(key)):
            self.state.delete(CAPKEYS_PREFIX + batch_id)

    def _records_remain(self, leaves: list[int], run: _RunState) -> bool:
        """Whether a record version the batch wrote or reused (its ``record`` leaves) is
        still stored. Gone: disposed in this run, or absent from the store (an earlier
        run's disposal). Conservative: a record another batch reused keeps this one too."""
        refs: set[tuple[str, str]] = set()
        for start, end in leaf_runs(leaves):
            refs |= record_refs(self.log.entries(start, end))
        for ref in sorted(refs - run.gone):
            if ref in run.staying:
                return True
            try:
                self.objects.stat(*ref)
            except ObjectNotFound:
                run.gone.add(ref)
                continue
            return True
        return False

    def _media(
        self, c: Candidate, report: DispositionReport, dry_run: bool, held: set[str],
        now: datetime, run: _RunState,
    ) -> None:
        info = self._look(c, report, held, now, run)
        if info is None:
            return
        item = Disposed(c.key, c.version_id, "media", None, "retain-until passed")
        report.disposed.append(item)
        if not dry_run:
            self._dispose(item, info.sha256, info.size)

    # -- the cursor ---------------------------------------------------------------------
    def _cursor(self) -> tuple[int, list[Candidate]]:
        """Where the last complete run started reading the log, and the versions with a
        ``disposed`` leaf it found still present (kept by a hold since): both come back."""
        value = self.state.get(CURSOR_KEY)
        if value is None:
            return 0, []
        doc = json.loads(value.value)
        kept = [Candidate(str(k), str(key), str(v), None, redo=True)
                for k, key, v in doc.get("kept", [])]
        return int(doc.get("log_size", 0)), kept

    def _save_cursor(self, log_size: int, kept: list[Candidate]) -> None:
        doc = {"log_size": log_size,
               "kept": [[c.kind, c.key, c.version_id] for c in kept]}
        self.state.put(CURSOR_KEY, _dump(doc))

    @staticmethod
    def _keep_reason(info: ObjectInfo, held: set[str], now: datetime) -> str | None:
        if info.legal_hold or item_id(info.key, info.version_id) in held:
            return "held"
        if info.retention is not None and info.retention.retain_until > now:
            return "not_expired"
        return None

    # -- one version --------------------------------------------------------------------
    def _dispose(self, item: Disposed, sha256: str | None, size: int) -> None:
        now = self.clock()
        h = ident_hash(item.key, item.version_id)
        body = {
            "v": 1,
            "kind": "tombstone",
            "what": {"key": item.key, "version_id": item.version_id, "sha256": sha256,
                     "size": size, "object_kind": item.kind},
            "why": item.reason,
            "policy": item.policy,
            "action": "delete",
            "when": iso(now),
        }
        retention = tombstone_retention(self.lock_mode, self.log_retention_days)
        t_key, t_version, t_sha, t_size = write_tombstone(
            self.objects, f"{item.kind}/{h[:2]}/{h}", body, retention
        )
        extras: dict[str, Any] = {"object_kind": item.kind, "reason": "retention_expired"}
        if item.policy:
            extras["policy"] = item.policy
        self.log.append([
            make_entry(EntryKind.TOMBSTONE, time=now, key=t_key, version_id=t_version,
                       sha256=t_sha, size=t_size, retain_until=retention.retain_until,
                       **extras).data,
            make_entry(EntryKind.DISPOSED, time=now, key=item.key, version_id=item.version_id,
                       sha256=sha256 if _hex64(sha256) else None, size=size,
                       tombstone_sha256=t_sha, **extras).data,
        ])  # fmt: skip
        with contextlib.suppress(ObjectNotFound):  # an earlier, interrupted run deleted it
            self.objects.delete_version(item.key, item.version_id)
        logger.info("disposed", object_key=item.key, object_kind=item.kind)

    # -- reviews ------------------------------------------------------------------------
    def _approved(
        self, record_id: str, key: str, version_id: str, decision: Decision, dry_run: bool
    ) -> bool:
        value = self.state.get(REVIEWS_PREFIX + record_id)
        if value is not None:
            return bool(json.loads(value.value).get("status") == "approved")
        if not dry_run:
            doc: dict[str, Any] = {
                "record_id": record_id, "key": key, "version_id": version_id,
                "policy": decision.governing,
                "required": 2 if decision.disposition.two_person_approval else 1,
                "approvals": [], "status": "pending", "queued_at": iso(self.clock()),
            }  # fmt: skip
            with contextlib.suppress(PreconditionFailed):  # queued by a concurrent run
                self.state.put(REVIEWS_PREFIX + record_id, _dump(doc), if_absent=True)
        return False


def list_reviews(state: StateStore, status: str | None = "pending") -> list[dict[str, Any]]:
    out = []
    for key in state.list(REVIEWS_PREFIX):
        value = state.get(key)
        if value is None:
            continue
        doc = json.loads(value.value)
        if status is None or doc.get("status") == status:
            out.append(doc)
    return out


def approve_review(state: StateStore, record_id: str, *, by: str, now: datetime) -> dict[str, Any]:
    """Add ``by``'s approval; two-person reviews need two different approvers.
    Raises NotFound, Conflict (the same person twice)."""
    for _ in range(20):
        value = state.get(REVIEWS_PREFIX + record_id)
        if value is None:
            raise NotFound(f"no disposition review for {record_id}", code="review_not_found")
        doc: dict[str, Any] = json.loads(value.value)
        if any(a["by"] == by for a in doc["approvals"]):
            raise Conflict(f"{by} already approved; a second, different approver is needed",
                           code="review_same_approver")
        doc["approvals"] = [*doc["approvals"], {"by": by, "at": iso(now)}]
        if len(doc["approvals"]) >= int(doc["required"]):
            doc["status"] = "approved"
        try:
            state.put(REVIEWS_PREFIX + record_id, _dump(doc), if_match=value.token)
            return doc
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"review {record_id}: too much contention")


def _hex64(value: str | None) -> bool:
    return value is not None and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
