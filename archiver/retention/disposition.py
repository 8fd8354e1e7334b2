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

An attachment follows its message (``archiver.retention.attachments``): a ``media_link``
or ``media_missing`` record is not decided by a policy of its own; it goes once its
message is gone (disposed, after the message's own review). A blob goes once every link
naming it is gone. So an attachment is never deleted while its message is kept, held or
waiting for approval, and the blob outlives its own (shorter) lock when a message needs it.

For a record the *current* policy set decides again: when the retain-until the engine
computes now is still ahead (a longer obligation enabled since the record was written,
``retention apply`` not yet run), the record stays and is counted as ``not_expired``.

Deleting one version is a resumable procedure, journalled first in working state
(``disposition/journal/<h>``, ``h`` = SHA-256 of ``key@version``), each step safe to redo:

1. the journal entry (what, why, which policy, its record id);
2. the hold re-checked on the store right before the delete (``stat``: a legal hold or an
   unexpired lock cancels the disposal, and the store refuses a delete of a version held
   in between); ``delete_version`` (no delete marker);
3. the record's index document (``index.delete_ids``);
4. a tombstone object ``tombstones/<kind>/<h[:2]>/<h>`` (write-once, a replay finds its
   own), then the entries saved in the journal and appended once (``once_since``): a
   ``tombstone`` leaf and a ``disposed`` leaf naming the deleted version;
5. the journal entry removed.

Every run first finishes the journal entries an earlier run left (a crash at any step):
a version still present is re-checked and deleted, the index document and the leaves
follow. So a ``disposed`` leaf is only ever written for a version that is gone, and index
text never outlives its record. ``disposed`` leaves from ``disposition/cursor`` on are
still looked at again (a crash of an older version of this job, which logged first).

Raw capture batches go once processed (``proc/<batch>`` is ``done``), past their own
retain-until, and when every record version the batch wrote or reused (the ``record``
leaves among the batch's leaves) is gone: disposed in this run or absent from the store.
Conservative: a record reused by a later delivery keeps the raw batch as well. Their
capture keys (``capkeys/<batch>``) go with them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from archiver.ingest.batch_status import BatchState
from archiver.keyspace import (
    CAPTURE_KEYS_PREFIX,
    DISPOSITION_CURSOR_KEY,
    DISPOSITION_JOURNAL_PREFIX,
    PROC_PREFIX,
    tombstone_name,
)
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.records.model import iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.attachments import (
    AttachmentView,
    is_attachment_header,
    message_versions,
)
from archiver.retention.common import (
    StoredRecord,
    facts_of,
    ident_hash,
    read_stored_record,
    tombstone_retention,
    write_tombstone,
)
from archiver.retention.expiry import Candidate, candidates, leaf_runs, record_refs
from archiver.retention.holds import HoldRegistry, item_id
from archiver.retention.reviews import (
    Approver,
    approve_review,
    approved,
    list_reviews,
)
from archiver.store.errors import ObjectLocked, ObjectNotFound
from archiver.store.port import LockMode, ObjectInfo, ObjectStore, StateStore
from policies.model import Decision, RecordFacts
from search.port import SearchIndex

logger = get_logger("archiver.disposition")


# The steps of one disposal a crash test can stop at (``DispositionJob.crash``).
CRASH_POINTS = ("after_intent", "after_store_delete", "after_index_delete",
                "after_tombstone", "after_log")


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


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
    not_expired: int = 0  # logged as locked + candidates the store or policy still keeps
    candidates: int = 0  # versions the log named for a look
    attachments_kept: int = 0  # links and blobs kept because a message still needs them
    resumed: int = 0  # journal entries of an interrupted run finished (or cancelled)
    ran: bool = True  # False: another replica holds the lease
    # Holds still being applied (``applying``): the run deleted nothing and comes back.
    waiting_for_holds: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "ran": self.ran,
            "disposed": [asdict(d) for d in self.disposed],
            "queued_for_review": self.queued_for_review,
            "held": self.held,
            "not_expired": self.not_expired,
            "candidates": self.candidates,
            "attachments_kept": self.attachments_kept,
            "resumed": self.resumed,
            "waiting_for_holds": self.waiting_for_holds,
        }


@dataclass
class _RunState:
    """What one run learnt: versions gone (disposed now or absent), versions staying."""

    gone: set[tuple[str, str]] = field(default_factory=set)
    staying: set[tuple[str, str]] = field(default_factory=set)
    kept_redo: list[Candidate] = field(default_factory=list)
    links: list[tuple[Candidate, StoredRecord, ObjectInfo]] = field(default_factory=list)

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
        log: LogAppender,
        index: SearchIndex,
        policy: Decider,
        holds: HoldRegistry,
        lock_mode: LockMode,
        log_retention_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crash: Callable[[str], None] | None = None,
        pseudo: Pseudonymizer | None = None,
    ) -> None:
        # Names a disposed record's business number in its leaves (as a pseudonym), so a
        # report over some numbers can tell its disposals once the record is gone.
        self.pseudo = pseudo
        self.objects = objects
        self.state = state
        self.log = log
        self.index = index
        self.policy = policy
        self.holds = holds
        self.lock_mode = lock_mode
        self.log_retention_days = log_retention_days
        self.clock = clock
        self.crash = crash or (lambda _point: None)  # crash tests stop a disposal here

    # -- the run ------------------------------------------------------------------------
    def run(
        self, *, dry_run: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> DispositionReport:
        """One pass: the journal an interrupted run left, then the log's candidates:
        messages and other records, their attachments' links, blobs, raw batches. Takes
        the lease itself unless ``dry_run`` (which also leaves the cursor alone)."""
        from archiver.jobs.lease import Lease

        report = DispositionReport(dry_run=dry_run)
        lease = Lease(self.state, "disposition", ttl=600)
        if not dry_run and not lease.acquire():
            report.ran = False
            return report
        try:
            self._run(report, dry_run, progress or (lambda _done, _total: None))
        finally:
            if not dry_run:
                lease.release()
        return report

    def _run(
        self, report: DispositionReport, dry_run: bool, progress: Callable[[int, int | None], None]
    ) -> None:
        # A hold still being applied covers records its items do not list yet (the family
        # tail of its placement): deciding on the held items now could delete one of them.
        # Nothing is deleted (nor an interrupted deletion finished) until it is applied;
        # the cursor stays, so the next run looks at the same candidates.
        applying = self.holds.applying()
        if applying:
            report.waiting_for_holds = applying
            logger.info("disposition_waits_for_holds", holds=applying)
            progress(0, 0)
            return
        if not dry_run:
            self._resume(report)
        now = self.clock()
        view = AttachmentView(log=self.log, objects=self.objects, state=self.state)
        view.catch_up()
        held = self.holds.held_items()
        since, kept_before = self._cursor()
        found = candidates(self.log, now, redo_since=since)
        listed = {(c.key, c.version_id) for c in found.versions}
        todo = [*found.versions, *(c for c in kept_before if (c.key, c.version_id) not in listed)]
        report.candidates = len(todo)
        report.not_expired = found.locked
        run = _RunState()
        done = 0
        progress(done, len(todo))  # shown even when nothing is due
        for c in (c for c in todo if c.kind == "record"):
            self._record(c, report, dry_run, held, now, run)
            done += 1
            progress(done, len(todo))
        for c, r, info in run.links:  # after every message of the run
            self._link(c, r, info, report, dry_run, held, run)
        for c in (c for c in todo if c.kind == "media"):
            self._media(c, view, report, dry_run, held, now, run)
            done += 1
            progress(done, len(todo))
        for c in (c for c in todo if c.kind == "raw"):
            self._raw(c, report, dry_run, held, now, run)
            done += 1
            progress(done, len(todo))
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
    ) -> None:
        info = self._look(c, report, held, now, run)
        if info is None:
            return
        try:
            r = read_stored_record(self.objects, c.key, c.version_id)
        except ObjectNotFound:
            run.gone.add((c.key, c.version_id))
            return
        if is_attachment_header(r.header):
            run.links.append((c, r, info))  # follows its message: decided after them
            return
        decision = self.policy.decision(facts_of(r.header))
        if decision.retain_until > now:
            # The current policy set keeps it longer than its lock says (``retention
            # apply`` has not run yet): not due, and not for review either.
            report.not_expired += 1
            run.stays(c)
            return
        if decision.disposition.action == "review" and not approved(
            self.state, r, decision, info, self.clock(), dry_run=dry_run
        ):
            report.queued_for_review.append(r.record_id)
            run.stays(c)
            return
        reason = (f"retain-until {iso(decision.retain_until)} passed; "
                  f"policy {decision.governing} says {decision.disposition.action}")
        item = Disposed(r.key, r.version_id, "record", decision.governing, reason)
        self._go(item, info, report, dry_run, held, run, record_id=r.record_id,
                 business=self._business(r.header))

    def _business(self, header: Any) -> str | None:
        """The pseudonym of the record's business number (None: no pseudonymizer, or the
        header names none)."""
        business = header.get("business") if isinstance(header, dict) else None
        number = business.get("phone_number_id") if isinstance(business, dict) else None
        if self.pseudo is None or not number:
            return None
        return self.pseudo.business(str(number))

    def _link(
        self, c: Candidate, r: StoredRecord, info: ObjectInfo, report: DispositionReport,
        dry_run: bool, held: set[str], run: _RunState,
    ) -> None:
        message = str(r.header.get("link_of"))
        remaining = [m for m in message_versions(self.objects, message) if m not in run.gone]
        if remaining:
            report.attachments_kept += 1
            run.stays(c)
            return
        item = Disposed(r.key, r.version_id, "record", "inherited",
                        f"its message {message} is disposed")
        self._go(item, info, report, dry_run, held, run, record_id=r.record_id,
                 business=self._business(r.header))

    def _media(
        self, c: Candidate, view: AttachmentView, report: DispositionReport, dry_run: bool,
        held: set[str], now: datetime, run: _RunState,
    ) -> None:
        info = self._look(c, report, held, now, run)
        if info is None:
            return
        links = view.of_blob(c.key, c.version_id)
        if not links or self._any_present([a.link for a in links], run) or any(
            self._any_present(message_versions(self.objects, a.message), run) for a in links
        ):
            # No logged link (cannot tell whose it is), or a link or message still stored.
            report.attachments_kept += 1
            run.stays(c)
            return
        item = Disposed(c.key, c.version_id, "media", None,
                        "every message that references it is disposed")
        self._go(item, info, report, dry_run, held, run)

    def _any_present(self, refs: Sequence[tuple[str, str]], run: _RunState) -> bool:
        for ref in refs:
            if ref in run.gone:
                continue
            if ref in run.staying:
                return True
            try:
                self.objects.stat(*ref)
            except ObjectNotFound:
                run.gone.add(ref)
                continue
            return True
        return False

    def _go(
        self, item: Disposed, info: ObjectInfo, report: DispositionReport, dry_run: bool,
        held: set[str], run: _RunState, *, record_id: str | None = None,
        business: str | None = None,
    ) -> None:
        if dry_run:  # answers as if it had deleted it
            report.disposed.append(item)
            run.gone.add((item.key, item.version_id))
            return
        if self._dispose(item, info.sha256, info.size, record_id, held, business):
            report.disposed.append(item)
            run.gone.add((item.key, item.version_id))
        else:
            report.held += 1
            run.staying.add((item.key, item.version_id))

    def _raw(
        self, c: Candidate, report: DispositionReport, dry_run: bool, held: set[str],
        now: datetime, run: _RunState,
    ) -> None:
        batch_id = c.key.rsplit("/", 1)[-1]
        proc = self.state.get(PROC_PREFIX + batch_id)
        doc = json.loads(proc.value) if proc is not None else {}
        if doc.get("status") != BatchState.DONE or not isinstance(doc.get("leaves"), list):
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
        self._go(item, info, report, dry_run, held, run)
        if not dry_run and (c.key, c.version_id) in run.gone:
            self._drop_capkeys(c.key, batch_id)

    def _drop_capkeys(self, key: str, batch_id: str) -> None:
        """The batch's wrapped capture keys, once no version of the batch is left."""
        if not any(x.key == key and not x.is_delete_marker
                   for x in self.objects.list_versions(key)):
            self.state.delete(CAPTURE_KEYS_PREFIX + batch_id)

    def _records_remain(self, leaves: list[int], run: _RunState) -> bool:
        """Whether a record version the batch wrote or reused (its ``record`` leaves) is
        still stored. Gone: disposed in this run, or absent from the store (an earlier
        run's disposal). Conservative: a record another batch reused keeps this one too."""
        refs: set[tuple[str, str]] = set()
        for start, end in leaf_runs(leaves):
            refs |= record_refs(self.log.entries(start, end))
        return self._any_present(sorted(refs), run)

    # -- the cursor ---------------------------------------------------------------------
    def _cursor(self) -> tuple[int, list[Candidate]]:
        """Where the last complete run started reading the log, and the versions with a
        ``disposed`` leaf it found still present (kept by a hold since): both come back."""
        value = self.state.get(DISPOSITION_CURSOR_KEY)
        if value is None:
            return 0, []
        doc = json.loads(value.value)
        kept = [Candidate(str(k), str(key), str(v), None, redo=True)
                for k, key, v in doc.get("kept", [])]
        return int(doc.get("log_size", 0)), kept

    def _save_cursor(self, log_size: int, kept: list[Candidate]) -> None:
        doc = {"log_size": log_size,
               "kept": [[c.kind, c.key, c.version_id] for c in kept]}
        self.state.put(DISPOSITION_CURSOR_KEY, _dump(doc))

    @staticmethod
    def _keep_reason(info: ObjectInfo, held: set[str], now: datetime) -> str | None:
        if info.legal_hold or item_id(info.key, info.version_id) in held:
            return "held"
        if info.retention is not None and info.retention.retain_until > now:
            return "not_expired"
        return None

    # -- one version: a journalled, resumable procedure ---------------------------------
    def _dispose(
        self, item: Disposed, sha256: str | None, size: int, record_id: str | None,
        held: set[str], business: str | None = None,
    ) -> bool:
        """Journal, then finish (see the module docstring). False: the store kept it."""
        journal = {
            "step": "deleting", "key": item.key, "version_id": item.version_id,
            "object_kind": item.kind, "policy": item.policy, "reason": item.reason,
            "sha256": sha256, "size": size, "record_id": record_id, "business": business,
        }  # fmt: skip
        name = DISPOSITION_JOURNAL_PREFIX + ident_hash(item.key, item.version_id)
        self.state.put(name, _dump(journal))
        self.crash("after_intent")
        return self._finish(name, journal, held, fresh=True)

    def _resume(self, report: DispositionReport) -> None:
        """Finish (or cancel, when a hold came since) what an interrupted run started."""
        names = list(self.state.list(DISPOSITION_JOURNAL_PREFIX))
        if not names:
            return
        held = self.holds.held_items()
        for name in names:
            value = self.state.get(name)
            if value is None:
                continue
            report.resumed += 1
            self._finish(name, json.loads(value.value), held)

    def _finish(
        self, name: str, journal: dict[str, Any], held: set[str], *, fresh: bool = False
    ) -> bool:
        key, version = str(journal["key"]), str(journal["version_id"])
        if journal["step"] == "deleting":
            if not self._delete(key, version, held, fresh=fresh):
                self.state.delete(name)  # cancelled: no leaf says it went
                logger.info("disposal_cancelled", object_key=key)
                return False
            self.crash("after_store_delete")
            if journal.get("record_id"):
                self.index.delete_ids([str(journal["record_id"])])
            self.crash("after_index_delete")
            journal = {**journal, "step": "logging", "size_before": self.log.size(),
                       "entries": [base64.b64encode(e).decode() for e in self._leaves(journal)]}
            self.state.put(name, _dump(journal))
            self.crash("after_tombstone")
        entries = [base64.b64decode(e) for e in journal["entries"]]
        self.log.append(entries, once_since=int(journal["size_before"]))
        self.crash("after_log")
        self.state.delete(name)
        logger.info("disposed", object_key=key, object_kind=journal["object_kind"])
        return True

    def _delete(self, key: str, version: str, held: set[str], *, fresh: bool) -> bool:
        """Delete, unless the store holds the version now. The store is the truth: it
        refuses to delete a version under a legal hold or an unexpired lock, so a hold that
        lands after this run looked is still honoured. A resumed disposal (not ``fresh``)
        looks first, since holds and policies may have changed since the crash. True when
        the version is gone (now or by an earlier attempt)."""
        if not fresh:
            try:
                info = self.objects.stat(key, version)
            except ObjectNotFound:
                return True  # an earlier attempt deleted it
            if self._keep_reason(info, held, self.clock()) is not None:
                return False
        try:
            self.objects.delete_version(key, version)
        except ObjectNotFound:
            return True
        except ObjectLocked:
            return False  # a hold landed between the stat and the delete
        return True

    def _leaves(self, journal: dict[str, Any]) -> list[bytes]:
        """The tombstone object (write-once) and the two leaves that say the version went."""
        now = self.clock()
        key, version = str(journal["key"]), str(journal["version_id"])
        kind, sha256, size = str(journal["object_kind"]), journal.get("sha256"), journal["size"]
        h = ident_hash(key, version)
        body = {
            "v": 1,
            "kind": "tombstone",
            "what": {"key": key, "version_id": version, "sha256": sha256,
                     "size": size, "object_kind": kind},
            "why": journal["reason"],
            "policy": journal.get("policy"),
            "action": "delete",
            "when": iso(now),
        }
        retention = tombstone_retention(self.lock_mode, self.log_retention_days)
        t_key, t_version, t_sha, t_size = write_tombstone(
            self.objects, tombstone_name(kind, h), body, retention
        )
        extras: dict[str, Any] = {"object_kind": kind, "reason": "retention_expired"}
        if journal.get("policy"):
            extras["policy"] = journal["policy"]
        if journal.get("business"):  # a pseudonym (``b_…``): entries carry no digits
            extras["business"] = journal["business"]
        return [
            make_entry(EntryKind.TOMBSTONE, time=now, key=t_key, version_id=t_version,
                       sha256=t_sha, size=t_size, retain_until=retention.retain_until,
                       **extras).data,
            make_entry(EntryKind.DISPOSED, time=now, key=key, version_id=version,
                       sha256=sha256 if _hex64(sha256) else None, size=size,
                       tombstone_sha256=t_sha, **extras).data,
        ]  # fmt: skip


def _hex64(value: str | None) -> bool:
    return value is not None and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


__all__ = [
    "CRASH_POINTS",
    "Approver",
    "Disposed",
    "DispositionJob",
    "DispositionReport",
    "approve_review",
    "list_reviews",
]
