"""From raw capture batches to records and log leaves — exactly once, crash-safe.

For one batch the worker (1) claims it in working state, (2) decrypts and parses each
delivery, (3) writes one record per event (write-once keys derived from the event's
dedup key), (4) writes the log entries it is about to append into the batch's state
(``logging``), appends them, and (5) marks the batch ``done``.

Why this is exactly-once under SIGKILL anywhere:

* records are write-once at deterministic keys: a replay finds its own record (same raw
  slot) and reuses it; a *different* delivery of the same event finds it and only adds
  a source link (also at a deterministic key);
* nothing is appended to the log before the exact entry bytes are saved in state; a
  replay in ``logging`` looks for those leaf hashes in the log from the size it saved
  and appends only the ones that are missing;
* the raw batch's own log leaf is part of the same append.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from archiver.ingest.appends import AppendCoalescer
from archiver.ingest.batch_status import BatchResult, BatchState
from archiver.ingest.capture import batch_id_of
from archiver.ingest.consent import consent_records_for
from archiver.ingest.outbound import is_proxy_capture, parse_outbound
from archiver.ingest.ports import (
    KeySource,
    LoggedHook,
    PolicyDecider,
    PolicyRef,
    RecentWrites,
    SubjectKeys,
)
from archiver.ingest.rawbatch import RawBatchError, parse_batch
from archiver.keys.envelope import DataKey, KeyEncryptionKey
from archiver.keyspace import (
    CAPTURE_KEYS_PREFIX,
    PENDING_INDEX_READY,
    PENDING_PREFIX,
    PROC_PREFIX,
    RAW_PREFIX,
    media_job_key,
    raw_key,
)
from archiver.ledger.entry import EntryKind, key_created_entry, make_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.metering import BATCHES, RECORDS, stage
from archiver.metrics import UNPROCESSABLE_DELIVERIES
from archiver.records.facts import facts_of
from archiver.records.model import Record, iso, to_jsonable
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import ObjectExists, ObjectNotFound, PreconditionFailed, StoreError
from archiver.store.port import LockMode, ObjectStore, StateStore, lock_at_least
from archiver.subjects.aliases import aliases_of
from archiver.subjects.grants import QUOTING_KINDS, grant_slots
from archiver.subjects.identity import Identities, Merge, merged_entry
from archiver.subjects.mentions import named_contacts
from archiver.subjects.traces import ConversationTraces
from archiver.whatsapp import Event, EventKind, parse_delivery
from archiver.whatsapp.events import ContactRef
from archiver.whatsapp.media import MEDIA_ID_INVALID, is_media_id
from archiver.whatsapp.parser import repair_flags, unprocessable
from policies.model import RecordFacts

log = get_logger("archiver.processor")

# PENDING_INDEX_READY is set once the pending index covers every batch captured before it
# existed (a one-time full scan of the raw prefix; later batches enter it at capture).
# A batch still pending this long after capture is stuck: an alert, a metric, a finding.
STUCK_AFTER = timedelta(hours=1)
CLAIM_SECONDS = 300
# A batch with more records than this (a history sync: hundreds of messages a delivery)
# appends its records to the log a chunk at a time, so that the first are searchable
# while the rest are written, instead of all of them together at the end.
APPEND_EVERY = 256


@dataclass
class BatchOutcome:
    batch_id: str
    status: BatchResult
    records: int = 0
    reused: int = 0
    links: int = 0
    conflicts: int = 0
    leaves: list[int] = field(default_factory=list)
    unreadable: int = 0
    unprocessable: int = 0  # deliveries or events kept as ``unprocessable`` records
    record_keys: list[str] = field(default_factory=list)  # written or reused, in order


# Errors that mean "this content cannot be made a record" (a bug in pure code or a value
# canonical JSON cannot hold), as opposed to a store or key failure (ArchiverError), which
# fails the batch so that it is retried.
_CONTENT_ERRORS = (ValueError, TypeError, UnicodeError, RecursionError, OverflowError)

# (header, content, tags, captured_at, event, raw slot ref, event index in its delivery)
_Job = tuple[
    dict[str, Any], dict[str, Any], tuple[str, ...], datetime, Event | None, dict[str, Any],
    int | None,
]

# (header, content, tags, event, event index): one record a delivery makes
_Made = tuple[dict[str, Any], dict[str, Any], tuple[str, ...], Event | None, int | None]


def _reason(exc: BaseException) -> str:
    """A machine-readable reason for an unprocessable event (no content)."""
    if isinstance(exc, RecursionError):
        return "too_deep"
    if isinstance(exc, UnicodeError):
        return "bad_unicode"
    if isinstance(exc, ValueError | OverflowError):
        return "not_canonical"
    return "internal"


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass(frozen=True, slots=True)
class _Written:
    record: Record
    version_id: str
    new: bool  # False: an earlier attempt of this same batch wrote it


class Processor:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        kek: KeyEncryptionKey,
        subject_keys: KeySource,
        pseudo: Pseudonymizer,
        policy: PolicyDecider,
        log_appender: LogAppender,
        on_logged: LoggedHook,
        recent: RecentWrites | None = None,
        keywords: Callable[[str], frozenset[str]] = lambda _which: frozenset(),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        owner: str | None = None,
        crash_hook: Callable[[str], None] | None = None,
        workers: int = 16,
        traces: ConversationTraces | None = None,
        identities: Identities | None = None,
        appends: AppendCoalescer | None = None,
    ) -> None:
        self.objects = objects
        self.state = state
        self.kek = kek
        self.keys = subject_keys
        self._session: SubjectKeys = subject_keys  # this batch's (KeySource.session)
        self.pseudo = pseudo
        self.policy = policy
        self.log = log_appender
        # After the append, before the batch is marked done (Runtime.open wires retention's
        # hold of new arrivals): a crash past the append runs it again on the retry.
        self.on_logged = on_logged
        self.keywords = keywords
        self.clock = clock
        self.owner = owner or secrets.token_hex(6)
        # Tests inject a hook that can SIGKILL the process at named points.
        self._crash = crash_hook or (lambda _point: None)
        # Shared with the siblings: alias links and merge pointers are write-once.
        self._identities = identities or Identities(state, clock=clock)
        self._ids = self._identities.fresh()
        self._merges: dict[str, Merge] = {}
        self._batch_id = ""
        self._key_events: list[dict[str, Any]] = []
        self._batch_keys: dict[str, DataKey] = {}
        self._count_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="records")
        self._workers = workers
        # The follower of this process indexes these records next: spare it the reads.
        self._recent = recent
        self._traces = traces or ConversationTraces(state)  # shared with the siblings
        # Shared with the siblings: batches finishing together share one log append.
        self._appends = appends or AppendCoalescer(log_appender)

    def sibling(self) -> Processor:
        """Another processor on the same stores, with its own per-batch state and owner id
        (one per processing thread: a ``Processor`` handles one batch at a time)."""
        return Processor(
            objects=self.objects,
            state=self.state,
            kek=self.kek,
            subject_keys=self.keys,
            pseudo=self.pseudo,
            policy=self.policy,
            log_appender=self.log,
            on_logged=self.on_logged,
            recent=self._recent,
            keywords=self.keywords,
            clock=self.clock,
            workers=self._workers,
            traces=self._traces,
            identities=self._identities,
            appends=self._appends,
        )

    def _bump(self, outcome: BatchOutcome, counter: str) -> None:
        with self._count_lock:
            setattr(outcome, counter, getattr(outcome, counter) + 1)

    # -- claim -----------------------------------------------------------------------

    def _claim(self, batch_id: str) -> tuple[dict[str, Any], str] | None:
        """The batch's state to resume from and its token, or None when done or claimed by
        another (live) owner."""
        key = PROC_PREFIX + batch_id
        now = time.time()
        # Most batches are claimed once, fresh: try the create first (one round trip) and
        # read the state only when there is one (a retry, a redelivery, another worker).
        doc: dict[str, Any] = {
            "status": BatchState.CLAIMED,
            "owner": self.owner,
            "until": now + CLAIM_SECONDS,
        }
        try:
            return doc, self.state.put(key, json.dumps(doc).encode(), if_absent=True)
        except PreconditionFailed:
            pass
        current = self.state.get(key)
        if current is None:
            return None  # deleted between the two calls: not ours to create again now
        doc = json.loads(current.value)
        if doc["status"] == BatchState.DONE:
            return None
        if doc.get("owner") != self.owner and doc.get("until", 0) > now:
            return None
        doc = {**doc, "owner": self.owner, "until": now + CLAIM_SECONDS}
        try:
            token = self.state.put(key, json.dumps(doc).encode(), if_match=current.token)
        except PreconditionFailed:
            return None
        return doc, token

    def _save(self, batch_id: str, doc: dict[str, Any], token: str) -> str:
        """Replace the batch's state we hold (``token``: from our claim or last save). A
        lost compare-and-swap means another worker took the batch over (our claim ran out):
        this attempt stops; the batch's steps are idempotent, so the other one finishes."""
        return self.state.put(PROC_PREFIX + batch_id, json.dumps(doc).encode(), if_match=token)

    # -- the batch ---------------------------------------------------------------------

    def process(self, key: str, version_id: str | None = None) -> BatchOutcome:
        started = time.perf_counter()
        outcome = self._process(key, version_id)
        if outcome.status == BatchResult.DONE:
            # One line per batch for operators: counts and time, never content.
            log.info(
                "batch_processed", batch_id=outcome.batch_id, records=outcome.records,
                reused=outcome.reused, links=outcome.links, conflicts=outcome.conflicts,
                unreadable=outcome.unreadable, unprocessable=outcome.unprocessable,
                leaves=len(outcome.leaves),
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )  # fmt: skip
        return outcome

    def _process(self, key: str, version_id: str | None = None) -> BatchOutcome:
        batch_id = batch_id_of(key)
        with stage("claim"):
            claimed = self._claim(batch_id)
        if claimed is None:
            return BatchOutcome(batch_id, BatchResult.SKIPPED)
        doc, token = claimed
        if doc["status"] == BatchState.LOGGING:  # a retry after a crash past the save below
            leaves = self._finish(batch_id, doc, token)
            return BatchOutcome(batch_id, BatchResult.DONE, leaves=leaves)
        with stage("raw_read"):
            version_id = version_id or self._only_version(key)
            raw_bytes = self.objects.get(key, version_id)
            raw_info = self.objects.stat(key, version_id)
        raw_until = raw_info.retention.retain_until if raw_info.retention else None
        if "size_before" in doc:  # an earlier attempt appended chunks (``_Early``)
            # Its entries are found from its saved size on, and the raw batch's leaf is
            # made with the retention it saw (this one may see it extended since).
            raw_until = _parse_optional_time(doc.get("raw_until"))
        early = _Early(self, key, batch_id, doc, token, raw_until)
        outcome = BatchOutcome(batch_id, BatchResult.DONE)
        self._key_events = []
        with stage("records_write"):
            written, media_jobs = self._write_records(
                key, version_id, raw_bytes, outcome, early.chunk_written
            )
        token = early.token
        RECORDS.labels(step="written").inc(outcome.records)
        RECORDS.labels(step="reused").inc(outcome.reused)
        outcome.record_keys = [w.record.key for w in written]
        self._crash("after_records")
        with stage("entries"):
            entries = self._entries_for(key, version_id, raw_bytes, raw_until, written)
        # Everything after the append is saved with the entries, so that a retry after a
        # crash anywhere past this point still holds the records and queues their media.
        doc = {
            "status": BatchState.LOGGING,
            # The claim stays on the batch: another worker must not take it over while we
            # append (it would only repeat idempotent steps, but twice the work).
            "owner": self.owner,
            "until": time.time() + CLAIM_SECONDS,
            # A lower bound is enough (see ``TransparencyLog.size_floor``): it only widens
            # the range a retry looks its entries up in, by what others appended.
            "size_before": early.size_before if early.size_before is not None
            else self.log.size_floor(),
            "entries": [base64.b64encode(e).decode() for e in entries],
            "written": [[w.record.key, w.version_id] for w in written],
            "media_jobs": [[job_key, job] for job_key, job in media_jobs],
            "merged": sorted({m.into for m in self._merges.values()}),
        }
        with stage("log_save"):
            token = self._save(batch_id, doc, token)
        self._crash("before_append")
        outcome.leaves = self._finish(batch_id, doc, token)
        return outcome

    def _finish(self, batch_id: str, doc: dict[str, Any], token: str) -> list[int]:
        """Append the saved entries exactly once, then the steps that follow them: legal
        holds on the new records, their media jobs, and the batch marked done."""
        with stage("log_append"):
            leaves = self._append_idempotent(doc)
        self._crash("after_append")
        with stage("finish"):
            self._after_append(batch_id, doc, token, leaves)
        BATCHES.inc()
        return leaves

    def _after_append(
        self, batch_id: str, doc: dict[str, Any], token: str, leaves: list[int]
    ) -> None:
        # Records arriving while a legal hold on their subject or conversation is open, and
        # subjects merged by this batch (a hold on one id of the person covers all).
        self.on_logged(
            [(str(k), str(v)) for k, v in doc.get("written", [])],
            [str(s) for s in doc.get("merged") or []],
        )
        jobs = [(str(k), dict(job)) for k, job in doc.get("media_jobs", [])]
        list(self._pool.map(self._put_media_job, jobs))
        self._save(batch_id, {"status": BatchState.DONE, "leaves": leaves}, token)
        self.state.delete(PENDING_PREFIX + batch_id)  # a crash here: the sweep cleans up

    def _put_media_job(self, item: tuple[str, dict[str, Any]]) -> None:
        with contextlib.suppress(PreconditionFailed):  # queued by an earlier attempt
            self.state.put(item[0], json.dumps(item[1]).encode(), if_absent=True)

    def _only_version(self, key: str) -> str:
        versions = [v for v in self.objects.list_versions(key) if v.key == key]
        live = [v for v in versions if not v.is_delete_marker]
        if not live:
            raise ObjectNotFound(f"no version of {key}")
        return live[0].version_id

    def _append_idempotent(self, doc: dict[str, Any]) -> list[int]:
        entries = [base64.b64decode(e) for e in doc["entries"]]
        return self._appends.append_once(entries, int(doc["size_before"]))

    # -- records -----------------------------------------------------------------------

    def _write_records(
        self,
        key: str,
        version_id: str,
        raw_bytes: bytes,
        outcome: BatchOutcome,
        on_chunk: Callable[[str, bytes, list[_Written | None]], None] | None = None,
    ) -> tuple[list[_Written], list[tuple[str, dict[str, Any]]]]:
        try:
            opened = parse_batch(raw_bytes)
        except RawBatchError:
            log.error("raw_batch_unreadable", object_key=key)
            outcome.unreadable += 1
            return [], []
        with stage("records_capkeys"):
            keys_value = self.state.get(CAPTURE_KEYS_PREFIX + opened.batch_id)
        wrapped: dict[str, str] = json.loads(keys_value.value)["keys"] if keys_value else {}
        raw_sha = hashlib.sha256(raw_bytes).hexdigest()
        written: list[_Written] = []
        media_jobs: list[tuple[str, dict[str, Any]]] = []
        grants: set[tuple[str | None, str, int]] = set()
        jobs: list[_Job] = []
        self._batch_keys = {}
        self._batch_id = opened.batch_id
        # "Not merged" answers of earlier batches hold while no merge happened since.
        self._ids = self._identities.session()
        self._merges = {}
        for slot in opened.slots:
            blob = wrapped.get(str(slot.index))
            if blob is None:  # the capture key was shredded (erasure) or never stored
                outcome.unreadable += 1
                continue
            body = opened.open(slot.index, self.kek.unwrap(base64.b64decode(blob)))
            captured_at = datetime.fromisoformat(slot.received_at)
            raw_ref = {"key": key, "version_id": version_id, "sha256": raw_sha, "slot": slot.index}
            # One delivery's problem is that delivery's alone: what cannot become records
            # becomes an ``unprocessable`` record naming its raw slot, and the rest of the
            # batch goes on (store and key errors still fail the batch, to be retried).
            made = self._with_mentions(
                self._delivery_records(
                    body, slot.signature_header, raw_ref, captured_at, opened.batch_id
                ),
                body,
            )
            for header, content, tags, event, index in made:
                # Erasure must find every delivery slot that mentions a subject.
                grants.add((header.get("subject"), opened.batch_id, slot.index))
                for mentioned in header.get("mentions") or ():
                    grants.add((mentioned, opened.batch_id, slot.index))
                jobs.append((header, content, tags, captured_at, event, raw_ref, index))
        # Records are independent of each other: write them side by side (each is a
        # write-once PUT plus key look-ups), keeping the input order for the log.
        by_subject: dict[str, list[int]] = {}
        for subject, _batch, slot_index in grants:
            if subject:
                by_subject.setdefault(subject, []).append(slot_index)
        # With the grants, each new (conversation, subject) pair's trace, so a conversation
        # hold finds its records without the full scan (archiver.retention.conversation_lookup).
        writes: list[Callable[[], None]] = [
            partial(grant_slots, self.state, subject, opened.batch_id, slots)
            for subject, slots in sorted(by_subject.items())
        ]
        writes += self._traces.pending(
            ((j[0].get("conversation"), j[0].get("subject")) for j in jobs), opened.batch_id
        )
        # Side by side with the key look-ups below; all must land before any record.
        landing = [self._pool.submit(write) for write in writes]
        # One key look-up per data subject, before the records: threads writing records of
        # one new subject would otherwise race to create its key (a CAS loss costs a
        # delete and a retry) and each unwrap it again.
        # ``creator``: a retry of this batch after a crash that lost a key's creation event
        # (before the batch's entries were saved) gets the event again, so it is logged.
        owners = sorted({self._key_owner(j[0]) for j in jobs})
        # A record naming several people is sealed under its slot's key, granted to each
        # of them: the erasure of any one destroys it (KeyStore.shred of granted keys).
        mention_keys = sorted({(self._key_owner(j[0]), tuple(j[0]["mentions"]))
                               for j in jobs if j[0].get("mentions")})
        created_by = opened.batch_id
        with stage("records_keys"):
            session = self._session = self.keys.session()
            for owner, (data_key, key_event) in zip(
                owners,
                self._pool.map(lambda o: session.get_or_create(o, creator=created_by), owners),
                strict=True,
            ):
                self._batch_keys[owner] = data_key
                if key_event is not None:
                    self._key_events.append(key_event)
            for owner, mentioned in mention_keys:
                session.grant(self._batch_keys[owner].key_id, mentioned)
        with stage("records_grants"):
            for write in landing:
                write.result()  # raises what a grant or trace write raised: no record yet
        results: list[_Written | None] = []
        written_chunk: list[_Written | None] | None = None  # written, not appended yet
        for start in range(0, len(jobs), APPEND_EVERY):
            chunk = jobs[start : start + APPEND_EVERY]
            # The chunk's writes start, then the previous chunk (all written) is appended
            # while they run: a batch alone at the end of a history sync kept the CPU
            # idle for each append's round trips. The log still names only records
            # already written, in the order they were written (see _Early).
            writing = self._pool.map(lambda j: self._write_guarded(j, outcome), chunk)
            if on_chunk is not None and written_chunk is not None:
                on_chunk(version_id, raw_bytes, written_chunk)  # never the last: see _Early
            with stage("records_put"):
                written_chunk = list(writing)
            results += written_chunk
        for (_h, _c, _t, captured_at, event, raw_ref, _i), done in zip(jobs, results, strict=True):
            if done is None:
                continue
            written.append(done)
            if done.record.header.get("kind") == "unprocessable":
                self._flag_unprocessable(done, outcome)
                continue
            if event is not None and done.record.header.get("kind") != "source" and (
                done.new or done.record.header.get("raw") == raw_ref
            ):
                media_jobs.extend(self._media_jobs(done.record, event, captured_at))
        return written, media_jobs

    def _delivery_records(
        self,
        body: bytes,
        signature_header: str,
        raw_ref: dict[str, Any],
        captured_at: datetime,
        batch_id: str,
    ) -> list[_Made]:
        """The records of one delivery: (header, content, tags, event, event index)."""
        try:
            result = (  # the send proxy's own captures (archiver/ingest/outbound.py)
                parse_outbound(body, signature_header, captured_at)
                if is_proxy_capture(signature_header)
                else parse_delivery(body)
            )
        except Exception as exc:  # the parsers never raise: a bug must not stall the batch
            return [self._unprocessable(raw_ref, captured_at, batch_id, None, "parser_error",
                                        _detail(exc))]
        bad = unprocessable(result)
        if bad is not None:
            return [self._unprocessable(raw_ref, captured_at, batch_id, None, bad.code,
                                        bad.message)]
        out: list[_Made] = []
        for index, (event, repairs) in enumerate(
            zip(result.events, repair_flags(result), strict=True)
        ):
            try:
                made: list[_Made] = [
                    (header, content, tuple(sorted({*tags, *repairs})), event, index)
                    for header, content, tags in self._records_for(event, raw_ref, captured_at)
                ]
            except _CONTENT_ERRORS as exc:
                made = [self._unprocessable(raw_ref, captured_at, batch_id, index,
                                            _reason(exc), _detail(exc), event)]
            out.extend(made)
        return out

    def _unprocessable(
        self,
        raw_ref: dict[str, Any],
        captured_at: datetime,
        batch_id: str,
        event_index: int | None,
        reason: str,
        detail: str,
        event: Event | None = None,
    ) -> _Made:
        """An ``unprocessable`` record: names the batch, the delivery (slot) and, when one
        event of it failed, the event's index, with a reason code; the delivery's bytes
        stay in the raw capture it points at. Its id is deterministic, so a retry of the
        batch finds it (docs/formats.md "Unprocessable deliveries")."""
        phone_number_id = event.phone_number_id if event is not None else None
        waba_id = event.waba_id if event is not None else None
        business = phone_number_id or (f"waba:{waba_id}" if waba_id else "unknown")
        where = f"unprocessable:{batch_id}:{raw_ref['slot']}:{event_index}"
        header: dict[str, Any] = {
            "v": 1,
            "record_id": self.pseudo.record_id(business, where),
            "kind": "unprocessable",
            "origin": "meta",
            "direction": "none",
            "message_type": None,
            "business": {
                "phone_number_id": phone_number_id,
                "display_phone_number": None,
                "waba_id": waba_id,
            },
            "subject": None,
            "conversation": None,
            "message_ref": None,
            "refs": {"reply_to": None, "edit_of": None, "revoke_of": None, "reaction_to": None},
            "status": None,
            "occurred_at": None,
            "captured_at": iso(captured_at),
            "raw": raw_ref,
            "unprocessable": {
                "batch_id": batch_id,
                "delivery": raw_ref["slot"],
                "event": event_index,
                "reason": reason,
            },
            "content_mac": self.pseudo.content_mac(hashlib.sha256(where.encode()).hexdigest()),
            "dedup": self.pseudo.token("d_", "dedup", business, where),
        }
        # The detail may quote the input: it is sealed, never in the clear header.
        return header, {"error": detail}, ("unprocessable",), None, event_index

    def _write_guarded(self, job: _Job, outcome: BatchOutcome) -> _Written | None:
        """``_write_one``; a record whose content cannot be made canonical (a value JSON
        cannot hold) becomes the ``unprocessable`` record of its event instead."""
        header, content, tags, captured_at, event, raw_ref, index = job
        try:
            return self._write_one(header, content, tags, captured_at, outcome)
        except _CONTENT_ERRORS as exc:
            if header.get("kind") == "unprocessable":
                raise  # our own small record failing is a bug: stall loudly, never loop
            batch_id = batch_id_of(str(raw_ref["key"]))
            bad = self._unprocessable(raw_ref, captured_at, batch_id, index, _reason(exc),
                                      _detail(exc), event)
            return self._write_one(bad[0], bad[1], bad[2], captured_at, outcome)

    def _flag_unprocessable(self, done: _Written, outcome: BatchOutcome) -> None:
        info = done.record.header["unprocessable"]
        outcome.unprocessable += 1
        if done.new:  # counted once, not again by a retry that reuses the record
            UNPROCESSABLE_DELIVERIES.labels(reason=str(info["reason"])).inc()
        log.error("delivery_unprocessable", batch_id=info["batch_id"],
                  delivery=info["delivery"], event_index=info["event"], reason=info["reason"],
                  record_id=done.record.record_id)

    def _records_for(
        self, event: Event, raw_ref: dict[str, Any], captured_at: datetime
    ) -> Iterable[tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]]:
        business = event.phone_number_id or (
            f"waba:{event.waba_id}" if event.waba_id else "unknown"
        )
        subject = self._subject(business, event)
        if event.group_id:
            conversation = self.pseudo.conversation(business, "group:" + event.group_id)
        elif subject is not None:
            conversation = self.pseudo.conversation(business, subject)
        else:
            conversation = None
        content = {"event": to_jsonable(event)}

        def ref(message_id: str | None) -> str | None:
            return self.pseudo.message_ref(business, message_id) if message_id else None

        status = getattr(event, "status", None)
        header: dict[str, Any] = {
            "v": 1,
            "record_id": self.pseudo.record_id(business, event.dedup_key),
            "kind": event.kind.value,
            "origin": event.origin.value,
            "direction": event.direction.value,
            "message_type": event.message_type,
            "business": {
                "phone_number_id": event.phone_number_id,
                "display_phone_number": event.display_phone_number,
                "waba_id": event.waba_id,
            },
            "subject": subject,
            "conversation": conversation,
            "message_ref": ref(event.message_id),
            "refs": {
                "reply_to": ref(event.reply_to),
                "edit_of": ref(event.edit_of),
                "revoke_of": ref(event.revoke_of),
                "reaction_to": ref(getattr(event, "reaction_to", None)),
            },
            "status": status if event.kind is EventKind.STATUS else None,
            "occurred_at": iso(event.occurred_at),
            "captured_at": iso(captured_at),
            "raw": raw_ref,
            "content_mac": self.pseudo.content_mac(event.content_hash),
            "dedup": self.pseudo.token("d_", "dedup", business, event.dedup_key),
        }
        flags: list[str] = []
        if event.unknown:
            flags.append("unknown_fields")
        if event.kind is EventKind.UNKNOWN:
            flags.append("unparsed")
        yield header, content, tuple(flags)
        for consent_header, consent_content in consent_records_for(
            event, header, self.keywords, self.pseudo
        ):
            yield consent_header, consent_content, ()

    def _subject(self, business: str, event: Event) -> str | None:
        """The canonical subject of the event's contact. Aliases that Meta names together
        (a contact's wa_id and BSUID, a number change's old and new ids) are linked, and
        link subjects seen apart until now (a merge, logged with this batch's leaves)."""
        aliases = aliases_of(event.contact)
        if aliases.primary is None:
            return None
        default = self.pseudo.subject(business, aliases.primary)
        if not _meta_named(event):
            # The contact comes from a caller's request: it may find a subject, never link.
            return self._ids.resolve(self.pseudo, business, aliases.all) or default
        changed = aliases_of(getattr(event, "changed_to", None)).all
        subject, merges = self._ids.link(
            self.pseudo, business, aliases.all + changed, default=default, by=self._batch_id
        )
        for merge in merges:
            self._merges.setdefault(merge.subject, merge)
        return subject

    def _with_mentions(self, made: list[_Made], body: bytes) -> list[_Made]:
        """Subject-less records that may quote the delivery (``unknown``, ``unprocessable``)
        get the people the delivery names: one person becomes the record's subject (its
        key, its index document); several are listed in ``mentions`` (clear pseudonyms)
        and the record is sealed under its raw slot's key, granted to each of them. Either
        way every one of them is granted the raw slot, so erasing any of them leaves
        nothing readable. Ids are only looked up (or given the pseudonym a message of
        theirs would get): a hostile body must never link identities."""
        if not any(h.get("subject") is None and h.get("kind") in QUOTING_KINDS
                   for h, *_ in made):
            return made
        named = named_contacts(body)
        out: list[_Made] = []
        for header, content, tags, event, index in made:
            if header.get("subject") is not None or header.get("kind") not in QUOTING_KINDS:
                out.append((header, content, tags, event, index))
                continue
            business = header["business"].get("phone_number_id") or (
                named.business if named.business else None)
            if business is None:  # no number to scope a pseudonym: nobody to look up
                out.append((header, content, tags, event, index))
                continue
            found = sorted({self._mentioned_subject(business, c) for c in named.contacts})
            if len(found) == 1:
                header = {**header, "subject": found[0]}
            elif found:
                header = {**header, "mentions": found}
            out.append((header, content, tags, event, index))
        return out

    def _mentioned_subject(self, business: str, contact: ContactRef) -> str:
        aliases = aliases_of(contact)
        assert aliases.primary is not None  # named_contacts yields non-empty contacts only
        return self._ids.resolve(self.pseudo, business, aliases.all) or self.pseudo.subject(
            business, aliases.primary)

    def _key_owner(self, header: dict[str, Any]) -> str:
        # Events without a person (account, template updates) are sealed under a key of
        # the business number, named by a pseudonym like every key owner.
        business = header["business"]
        subject: str | None = header["subject"]
        if subject is None and header.get("mentions"):
            raw = header["raw"]
            return self.pseudo.token("m_", "mentions", str(raw["key"]), str(raw["slot"]))
        return subject or self.pseudo.token(
            "b_", "business", str(business["phone_number_id"] or business["waba_id"])
        )

    def _write_one(
        self,
        header: dict[str, Any],
        content: dict[str, Any],
        tags: tuple[str, ...],
        captured_at: datetime,
        outcome: BatchOutcome,
    ) -> _Written | None:
        business = header["business"]
        decision = self.policy.decide(
            RecordFacts(
                business_number=business["display_phone_number"],
                phone_number_id=business["phone_number_id"],
                direction=header["direction"],
                origin=header["origin"],
                message_type=header["message_type"],
                record_kind=header["kind"],
                tags=frozenset(tags),
                message_time=datetime.fromisoformat(header["occurred_at"])
                if header["occurred_at"]
                else None,
                capture_time=captured_at,
            )
        )
        header = {**header, "policy": _policy_json(decision), "flags": sorted(set(tags))}
        key_owner = self._key_owner(header)
        data_key = self._batch_keys.get(key_owner)
        if data_key is None:
            data_key, key_event = self._session.get_or_create(key_owner)
            self._batch_keys[key_owner] = data_key
            if key_event is not None:
                self._key_events.append(key_event)
        record = Record.build(header, content, data_key=data_key.secret, key_id=data_key.key_id)
        try:
            # ``fresh``: no look-up before the PUT. The conditional create refuses a key
            # an earlier attempt or another delivery wrote (ObjectExists, below), and
            # records are only ever deleted by version id, so no marker of ours hides one.
            put = self.objects.put(
                record.key,
                record.body,
                retention=lock_at_least(decision.lock_mode, decision.retain_until, self.clock()),
                content_type="application/json",
                fresh=True,
            )
            self._bump(outcome, "records")
            if self._recent is not None:
                self._recent.put(record.key, put.version_id, record.body)
            self._crash("after_record_put")
            return _Written(record, put.version_id, new=True)
        except ObjectExists:
            pass
        existing, existing_version = self._read_existing(record.key)
        if existing.header.get("raw") == header["raw"]:
            self._bump(outcome, "reused")  # our own earlier attempt: log it, do not rewrite it
            return _Written(existing, existing_version, new=False)
        if existing.header.get("content_mac") == header["content_mac"]:
            self._bump(outcome, "links")
            return self._write_link(existing, header, decision, data_key)
        if "conflict" in header["flags"]:
            return None  # a third different content under one id is caught by its own mac
        self._bump(outcome, "conflicts")
        conflict = {
            **header,
            "record_id": self.pseudo.record_id(
                str(business["phone_number_id"]), header["dedup"], header["content_mac"]
            ),
            "conflict_with": existing.record_id,
        }
        conflict.pop("policy")
        conflict.pop("flags")
        return self._write_one(conflict, content, (*tags, "conflict"), captured_at, outcome)

    def _write_link(
        self,
        original: Record,
        header: dict[str, Any],
        decision: PolicyRef,
        data_key: DataKey,
    ) -> _Written | None:
        raw = header["raw"]
        link_header = {
            "v": 1,
            "record_id": self.pseudo.record_id(
                original.record_id, "source", f"{raw['key']}#{raw['slot']}"
            ),
            "kind": "source",
            "link_of": original.record_id,
            "link_kind": original.header.get("kind"),
            "origin": header["origin"],
            "direction": header["direction"],
            "business": header["business"],
            "subject": header["subject"],
            "conversation": header["conversation"],
            "message_ref": header["message_ref"],
            "occurred_at": header["occurred_at"],
            "captured_at": header["captured_at"],
            "raw": raw,
            "policy": _policy_json(decision),
            "flags": ["duplicate_delivery"],
        }
        link = Record.build(link_header, {}, data_key=data_key.secret, key_id=data_key.key_id)
        try:
            put = self.objects.put(
                link.key,
                link.body,
                retention=lock_at_least(decision.lock_mode, decision.retain_until, self.clock()),
                content_type="application/json",
                fresh=True,  # as for records (``_write_one``)
            )
            if self._recent is not None:
                self._recent.put(link.key, put.version_id, link.body)
            return _Written(link, put.version_id, new=True)
        except ObjectExists:
            existing, version = self._read_existing(link.key)
            return _Written(existing, version, new=False)

    def _read_existing(self, key: str) -> tuple[Record, str]:
        version = self._only_version(key)
        return Record.parse(self.objects.get(key, version)), version

    def _media_jobs(
        self, record: Record, event: Event, captured_at: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        jobs = []
        retain_until, lock_mode = self._attachment_retention(record)
        for index, media in enumerate(event.media):
            if not media.media_id:
                continue
            # A media id not of Meta's shape is never fetched: the job carries the
            # problem and the media worker flags the message at once (media_missing).
            problem = {} if is_media_id(media.media_id) else {"problem": MEDIA_ID_INVALID}
            jobs.append(
                (
                    media_job_key(record.record_id, index),
                    {
                        **problem,
                        "record_id": record.record_id,
                        "index": index,
                        "media_id": media.media_id,
                        "sha256": media.sha256,
                        "mime_type": media.mime_type,
                        "phone_number_id": event.phone_number_id,
                        "subject": record.header.get("subject"),
                        "key_id": record.key_id,
                        "retain_until": retain_until,
                        "lock_mode": lock_mode,
                        "first_seen": iso(captured_at),
                        "attempts": 0,
                    },
                )
            )
        return jobs

    def _attachment_retention(self, record: Record) -> tuple[str, str]:
        """The blob's retention: the engine's answer for a ``media`` object with the
        message's facts, never shorter (nor weaker a lock) than the message's own."""
        policy = record.header["policy"]
        facts = dataclasses.replace(facts_of(record.header), record_kind="media")
        decided = self.policy.decide(facts)
        until = max(datetime.fromisoformat(policy["retain_until"]), decided.retain_until)
        strict = LockMode.COMPLIANCE.value
        lock = strict if strict in (policy["lock_mode"], decided.lock_mode.value) else (
            policy["lock_mode"])
        return str(iso(until)), lock

    # -- log entries -------------------------------------------------------------------

    @staticmethod
    def _raw_entry(
        key: str, version_id: str, raw_bytes: bytes, raw_until: datetime | None
    ) -> bytes:
        return make_entry(
            EntryKind.RAW,
            time=_batch_time(batch_id_of(key)),
            key=key,
            version_id=version_id,
            sha256=hashlib.sha256(raw_bytes).hexdigest(),
            size=len(raw_bytes),
            retain_until=raw_until,
        ).data

    @staticmethod
    def _record_entries(written: Iterable[_Written], seen: set[tuple[str, str]]) -> list[bytes]:
        """One RECORD leaf per record version not in ``seen`` (which it extends)."""
        entries: list[bytes] = []
        for item in written:
            if (item.record.key, item.version_id) in seen:
                continue  # one event twice in a delivery: one record, one leaf
            seen.add((item.record.key, item.version_id))
            header = item.record.header
            entries.append(
                make_entry(
                    EntryKind.RECORD,
                    time=datetime.fromisoformat(header["captured_at"]),
                    key=item.record.key,
                    version_id=item.version_id,
                    sha256=item.record.sha256,
                    size=len(item.record.body),
                    retain_until=datetime.fromisoformat(header["policy"]["retain_until"]),
                    record_id=item.record.record_id,
                    event=header["kind"],
                    policy=header["policy"]["id"],
                ).data
            )
        return entries

    def _entries_for(
        self,
        key: str,
        version_id: str,
        raw_bytes: bytes,
        raw_until: datetime | None,
        written: list[_Written],
    ) -> list[bytes]:
        batch_time = _batch_time(batch_id_of(key))
        entries = [self._raw_entry(key, version_id, raw_bytes, raw_until)]
        entries += self._record_entries(written, set())
        longest = raw_until
        for item in written:
            until = datetime.fromisoformat(item.record.header["policy"]["retain_until"])
            if longest is None or until > longest:
                longest = until
        entries += [key_created_entry(event) for event in self._key_events]
        entries += [merged_entry(m, self.pseudo) for _, m in sorted(self._merges.items())]
        if longest is not None and raw_until is not None and longest > raw_until:
            # Raw captures live as long as the longest record parsed from them.
            try:
                self.objects.extend_retention(key, version_id, longest)
            except StoreError as exc:
                log.error("raw_retention_extend_failed", object_key=key, error_code=exc.code)
                raise
            entries.append(
                make_entry(
                    EntryKind.RETENTION_EXTENDED,
                    time=batch_time,
                    key=key,
                    version_id=version_id,
                    retain_until=longest,
                    previous=iso(raw_until),
                ).data
            )
        return entries

    # -- discovery ---------------------------------------------------------------------

    def pending_batches(self, known: Collection[str] = ()) -> list[str]:
        """Raw batch keys not yet ``done``, oldest first, however old: the pending index in
        working state (written at capture, removed when done), never a window of days.

        ``known``: raw keys the caller already has queued or in progress; they are left
        out without reading their state (a sweep during a backlog read one state value
        per waiting batch, every sweep, to queue nothing new). A later sweep, once they
        left the caller's queue, tidies any of them that needs it."""
        self._ensure_pending_index()
        now = self.clock()
        keys: list[str] = []
        for name in sorted(self.state.list(PENDING_PREFIX)):
            batch_id = name[len(PENDING_PREFIX):]
            if known and raw_key(batch_id) in known:
                continue
            value = self.state.get(PROC_PREFIX + batch_id)
            if value is not None and json.loads(value.value).get("status") == BatchState.DONE:
                self.state.delete(name)  # done, but the process died before removing it
                continue
            key = raw_key(batch_id)
            if value is None and now - _batch_time(batch_id) > STUCK_AFTER and not any(
                v.key == key for v in self.objects.list_versions(key)
            ):
                # Its capture failed after the entry was written (answered 503, so Meta
                # sent it again): there is no batch to process.
                self.state.delete(name)
                continue
            keys.append(key)
        return keys

    def _stuck_names(self) -> list[str]:
        # Batch ids start with their capture time: the name alone says how old it is.
        cutoff = self.clock() - STUCK_AFTER
        return [n for n in sorted(self.state.list(PENDING_PREFIX))
                if _batch_time(n[len(PENDING_PREFIX):]) < cutoff]

    def stuck_count(self) -> int:
        """How many batches are pending over ``STUCK_AFTER`` after capture (one listing of
        the pending index: cheap enough for every metrics scrape and readiness probe)."""
        return len(self._stuck_names())

    def stuck_batches(self, limit: int = 20) -> list[dict[str, Any]]:
        """The oldest ``limit`` stuck batches: ``{"batch_id", "captured_at", "status"}``,
        status ``claimed``/``logging`` (a worker took it and never finished) or ``waiting``."""
        out: list[dict[str, Any]] = []
        for name in self._stuck_names()[:limit]:
            batch_id = name[len(PENDING_PREFIX):]
            value = self.state.get(PROC_PREFIX + batch_id)
            status = (json.loads(value.value).get("status") if value is not None
                      else BatchState.WAITING)
            if status == BatchState.DONE:
                continue  # only its pending entry is left; the next sweep removes it
            out.append({"batch_id": batch_id, "captured_at": iso(_batch_time(batch_id)),
                        "status": status})
        return out

    def _ensure_pending_index(self) -> None:
        """Batches captured before the pending index existed join it, once (a full scan
        of ``raw/``, every day of it)."""
        if self.state.get(PENDING_INDEX_READY) is not None:
            return
        for key in self.objects.list_keys(RAW_PREFIX):
            batch_id = batch_id_of(key)
            value = self.state.get(PROC_PREFIX + batch_id)
            if value is None or json.loads(value.value).get("status") != BatchState.DONE:
                with contextlib.suppress(PreconditionFailed):
                    self.state.put(PENDING_PREFIX + batch_id,
                                   json.dumps({"key": key, "since": None}).encode(),
                                   if_absent=True)
        with contextlib.suppress(PreconditionFailed):
            self.state.put(PENDING_INDEX_READY, str(iso(self.clock())).encode(), if_absent=True)

    def sweep(self) -> list[BatchOutcome]:
        return [self.process(key) for key in self.pending_batches()]


class _Early:
    """Chunk appends of a large batch (``APPEND_EVERY``): the raw batch's leaf and the
    records written so far go to the log before the batch's other records are written.

    Exactly once still: before its first chunk, the batch's state keeps the log size and
    the raw retention it saw (``size_before``, ``raw_until``), and every append of the
    batch, its final one (``logging``) and those of a retry included, passes that size as
    ``once_since``. A retry rebuilds the same entry bytes (records it finds are reused at
    their version; the raw leaf from the saved retention), so whatever an earlier attempt
    appended is found, never appended twice. Key, merge and retention leaves come only
    with the final append, from the saved ``logging`` state as before."""

    def __init__(
        self,
        processor: Processor,
        key: str,
        batch_id: str,
        doc: dict[str, Any],
        token: str,
        raw_until: datetime | None,
    ) -> None:
        self.processor = processor
        self.key = key
        self.batch_id = batch_id
        self.doc = doc
        self.token = token  # the batch state's, after our save
        self.raw_until = raw_until
        saved = doc.get("size_before")
        self.size_before: int | None = int(saved) if saved is not None else None
        self._seen: set[tuple[str, str]] = set()
        self._first = True

    def chunk_written(
        self, version_id: str, raw_bytes: bytes, results: list[_Written | None]
    ) -> None:
        p = self.processor
        if self.size_before is None:
            self.size_before = p.log.size_floor()
            doc = {
                **self.doc,
                "owner": p.owner,
                "until": time.time() + CLAIM_SECONDS,
                "size_before": self.size_before,
                "raw_until": iso(self.raw_until) if self.raw_until else None,
            }
            with stage("log_save"):
                self.token = p._save(self.batch_id, doc, self.token)
        entries: list[bytes] = []
        if self._first:
            entries.append(p._raw_entry(self.key, version_id, raw_bytes, self.raw_until))
            self._first = False
        entries += p._record_entries((w for w in results if w is not None), self._seen)
        with stage("log_append"):
            p._appends.append_once(entries, self.size_before)


def _parse_optional_time(text: object) -> datetime | None:
    return datetime.fromisoformat(str(text)) if text else None


def _meta_named(event: Event) -> bool:
    """Whether Meta itself named the event's contact. A send the Cloud API refused has
    no answer from Meta: its contact is the caller's ``to`` / ``recipient``
    (``archiver.ingest.outbound``), which must never link identities."""
    return not (event.kind is EventKind.API_SEND and event.message_id is None)


def _policy_json(decision: PolicyRef) -> dict[str, Any]:
    return {
        "id": decision.policy_id,
        "retain_until": iso(decision.retain_until),
        "lock_mode": decision.lock_mode.value,
        "matched": list(decision.matched),
    }


def _batch_time(batch_id: str) -> datetime:
    return datetime.strptime(batch_id.split("Z-")[0], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
