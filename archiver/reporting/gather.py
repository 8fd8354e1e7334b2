"""Gather ``reports.facts.ReportFacts`` from the archive for one regulation, period, numbers.

Sources, each read the way the archive itself trusts it:

* **the log**, pinned to one signed checkpoint (tree size N): raw captures, holds,
  disposals and their tombstones, verify sweeps, audit events (by their logged object
  and position) and earlier ``report`` entries (the previous report's checkpoint, whose
  consistency with N is proved from the tiles). Entries are read once, in bundles.
* **the index**, streamed (``time_asc`` pages of 1,000) for the period and numbers, keeping
  only documents whose leaf is inside the pinned tree: records by kind, origin, direction
  and number; template sends and the ``pricing.category`` of their statuses; statuses
  whose message was never captured; messages with media.
* **the object store's real lock state**: for every record of the period, or a seeded
  random sample of stated size, the record's object version named by its log leaf is
  HEADed (``ObjectStore.stat``) and its retention compared with what its policy required.
* **working state**: the attachments view (media fetched or flagged missing), the consent
  view (every change up to the period's end), erasure procedures; refused erasures come
  from the audit trail (``erasure:refused``), which is where the refusal is recorded.

Only pseudonyms and record ids enter the facts (the pure core refuses anything else).
Progress is reported as ``(stage, done, total)``.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from archiver.errors import ArchiverError, Conflict, InvalidInput
from archiver.keyspace import (
    ATTACHMENTS_BY_MESSAGE,
    COEXISTENCE_VIEW_PREFIX,
    CONSENT_VIEW_PREFIX,
    ERASURES_PREFIX,
    HOLDS_PREFIX,
    MEDIA_OBJECT_PREFIX,
    RECORDS_PREFIX,
    checkpoint_key,
)
from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import Checkpoint
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.errors import LedgerError
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import parse_note
from archiver.logs import get_logger
from archiver.records.model import Record, RecordError
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.attachments import AttachmentView
from archiver.retention.holds import OPEN_STATUSES, item_id
from archiver.retention.scope import hold_numbers
from archiver.store.errors import ObjectNotFound, StoreError
from archiver.store.port import ObjectStore, StateStore
from policies.model import PolicySet
from reports.facts import (
    AccessAction,
    AccessEvent,
    AccessFacts,
    CheckpointFact,
    CompletenessFacts,
    ComplianceFacts,
    ConsentEvent,
    ConsentKind,
    Consistency,
    Direction,
    DisposalFact,
    ErasureFact,
    ErasureStatus,
    HistoryPhase,
    HoldFact,
    IntegrityFacts,
    LockCheck,
    LockCheckMode,
    LockMode,
    LockObservation,
    MediaFact,
    MediaState,
    NumberActivity,
    NumberWatch,
    Origin,
    Period,
    PolicyInForce,
    RecordFact,
    RecordSummary,
    RefusedRequest,
    Regulation,
    ReportFacts,
    Scope,
    TemplateSend,
    VerifyFinding,
    VerifySweep,
)
from reports.findings import summary_of
from search.errors import SearchError
from search.port import SearchIndex, SearchRequest

log = get_logger("archiver.reporting")
Progress = Callable[[str, int, int], None]
PAGE = 1000
# What gathering reads of an index document (records are sorted after reading).
DOC_FIELDS = ("id", "record_id", "kind", "type", "origin", "direction", "phone_number_id",
              "ts", "captured_at", "subject", "policy", "retain_until", "leaf_index",
              "message_ref", "media_sha256", "pricing_category")
# Disposition runs hourly: a record is overdue only once past its retain-until by this much.
OVERDUE_GRACE = timedelta(days=1)
LOG_CHUNK = 4096  # entries per fetch (16 bundles)
SAMPLE_BATCH = 5000  # candidate leaves per index query when drawing the lock sample
MAX_SAMPLE_QUERIES = 40
_PSEUDO = re.compile(r"^[a-z]_[a-z2-7]{8,}$")
_CODE_CHARS = re.compile(r"[^a-z0-9_.:-]+")
_ACCESS = {
    "search:executed": AccessAction.SEARCH,
    "thread:viewed": AccessAction.VIEW,
    "record:viewed": AccessAction.VIEW,
    "export:created": AccessAction.EXPORT,
    "export:requested": AccessAction.EXPORT,
}
_REFUSALS = ("webhook:signature_refused", "webhook:handshake_refused", "erasure:refused",
             "auth:request_refused")
_SIGN_IN_FAILED = "auth:sign_in_failed"
_ORIGINS = {o.value for o in Origin}
_DIRECTIONS = {d.value for d in Direction}
# Locked objects besides records whose lock the report reads from the store.
_LOCKED_KINDS = {EntryKind.RAW: "raw", EntryKind.MEDIA: "media", EntryKind.AUDIT: "audit"}
_TICK = timedelta(microseconds=1)
# Meta's history error "history sharing turned off in the Business App" (as coexistence).
HISTORY_DECLINED = 2593109
_MESSAGE_KINDS = frozenset({"message", "echo", "history_message", "history_media", "api_send"})


class GatherError(InvalidInput):
    code = "report_request_invalid"


class NoCheckpoint(Conflict):
    code = "report_no_checkpoint"


# A report's period: at most a leap year (the daily series and appendix grow with it),
# within years the index and the calendar arithmetic handle.
MAX_PERIOD_DAYS = 366
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What one report covers. ``sample_size`` None: the full lock check."""

    regulation: Regulation
    start: datetime
    end: datetime  # exclusive
    numbers: tuple[str, ...]  # phone_number_ids; () = every number the index knows
    sample_size: int | None = None
    seed: str | None = None  # default: derived from scope and tree size (reproducible)
    tree_size: int | None = None  # pin to this signed checkpoint; None: the latest

    def to_json(self) -> dict[str, Any]:
        return {"regulation": self.regulation.value, "start": _iso(self.start),
                "end": _iso(self.end), "numbers": list(self.numbers),
                "sample_size": self.sample_size, "seed": self.seed,
                "tree_size": self.tree_size}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReportRequest:
        try:
            req = cls(
                Regulation(data["regulation"]),
                _parse_time(data["start"]),
                _parse_time(data["end"]),
                tuple(str(n) for n in data.get("numbers") or ()),
                None if data.get("sample_size") is None else int(data["sample_size"]),
                None if data.get("seed") is None else str(data["seed"]),
                None if data.get("tree_size") is None else int(data["tree_size"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise GatherError(f"report parameters invalid: {type(exc).__name__}") from None
        req.check()
        return req

    def check(self) -> None:
        if self.end <= self.start:
            raise GatherError("the period's end must be after its start",
                              code="report_period_invalid")
        if self.start < EARLIEST or self.end > LATEST:
            raise GatherError(f"the period must lie within {EARLIEST:%Y-%m-%d} and "
                              f"{LATEST:%Y-%m-%d}", code="report_period_invalid")
        if self.end - self.start > timedelta(days=MAX_PERIOD_DAYS):
            # The twin and the pages carry one row per day: decades would take the worker's
            # memory and hours of rendering (a 56-year period grew past 2 GB).
            raise GatherError(f"a report covers at most {MAX_PERIOD_DAYS} days",
                              code="report_period_invalid")
        if self.sample_size is not None and self.sample_size < 1:
            raise GatherError("sample_size must be at least 1", code="report_sample_invalid")
        if self.tree_size is not None and self.tree_size < 1:
            raise GatherError("tree_size must be at least 1", code="report_tree_size_invalid")


@dataclass(frozen=True, slots=True)
class GatherConfig:
    """What the gatherer needs from settings."""

    archive_name: str
    lock_mode: str  # ARCHIVER_LOCK_MODE: GOVERNANCE overrides every policy's mode
    silence_threshold_s: int  # ARCHIVER_REPORT_SILENCE_THRESHOLD_S
    watched_numbers: tuple[str, ...] = ()  # numbers expected to speak; () = scope numbers
    lock_check_workers: int = 16
    log_read_workers: int = 4  # threads fetching log bundles for the one pass over the log
    compliance: ComplianceFacts = field(default_factory=ComplianceFacts)


class _Checkpoints(Protocol):
    def latest_signed(self) -> Any: ...

    def sign_if_grown(self) -> Any: ...


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime:
    text = str(value)
    if len(text) == 10:  # a date: midnight UTC
        text += "T00:00:00+00:00"
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("time needs a zone")
    return t.astimezone(UTC)


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return _parse_time(value)
    except ValueError:
        return None


def _erasure_refusal(code: Any, details: Mapping[str, Any]) -> tuple[ErasureStatus, str]:
    """What an ``erasure:refused`` event says: ``erasure_pending`` decided nothing (a
    shared slot not decidable yet; the request is to be retried), so it is pending, not
    refused; ``erasure_out_of_scope`` is the token's scope, not the law. Events written
    before the code was recorded: a hold when holds are named, else an obligation."""
    if code == "erasure_pending":
        return ErasureStatus.PENDING, "erasure_pending"
    if code == "erasure_out_of_scope":
        return ErasureStatus.REFUSED, "out_of_scope"
    return ErasureStatus.REFUSED, "legal_hold" if details.get("holds") else "retention_obligation"


def _code(text: Any, default: str) -> str:
    code = _CODE_CHARS.sub("_", str(text or "").lower()).strip("_")[:80]
    return code if code and code[0].isalpha() else default


def policy_version(policy: Any) -> str:
    """A policy's version as printed: its id's content hash (policies carry no number)."""
    body = policy.model_dump_json(exclude={"resolved_parameters", "source_file"})
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()[:16]


def policies_in_force(policy_set: PolicySet, lock_mode: str, at: datetime) -> tuple[
        PolicyInForce, ...]:
    out = []
    for p in sorted(policy_set.enabled, key=lambda p: p.id):
        days = (p.period.add_to(at) - at).days
        mode = LockMode.GOVERNANCE if lock_mode == "GOVERNANCE" else LockMode(p.lock_mode.value)
        out.append(PolicyInForce(p.id, policy_version(p), days, mode))
    return tuple(out)


@dataclass
class _LogScan:
    raw_captures: int = 0
    # Every raw leaf (sorted) and those of the period: a record's capture is the raw leaf
    # sequenced just before it (ingest appends a raw leaf and its records as one group).
    raw_leaves: list[int] = field(default_factory=list)
    raw_in_period: set[int] = field(default_factory=set)
    raw_refs: dict[int, tuple[str, str]] = field(default_factory=dict)  # leaf -> object
    holds_placed: dict[str, datetime] | None = None
    holds_released: dict[str, datetime] | None = None
    disposed: list[dict[str, Any]] | None = None
    tombstones: set[str] | None = None
    verify: dict[str, Any] | None = None
    audit: list[tuple[str, str, int, str]] | None = None  # key, version, position, event
    previous_report: dict[str, Any] | None = None
    verify_audit: tuple[str, str, int] | None = None  # the last verify:run audit event
    # Locked objects other than records, by kind (raw, media, audit): (key, version) ->
    # retain-until logged for it, for those logged inside the period.
    locked: dict[str, dict[tuple[str, str], datetime]] = field(default_factory=dict)
    extended: dict[tuple[str, str], datetime] = field(default_factory=dict)
    gone: set[tuple[str, str]] = field(default_factory=set)  # disposed object versions


class ReportGatherer:
    def __init__(
        self,
        *,
        config: GatherConfig,
        objects: ObjectStore,
        state: StateStore,
        index: SearchIndex,
        log: TransparencyLog,
        checkpoints: CheckpointSigner | _Checkpoints,
        policy_set: PolicySet,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        history_catch_up: Callable[[], Any] | None = None,
        pseudo: Pseudonymizer | None = None,
    ) -> None:
        self.clock = clock
        # Turns the report's numbers into the pseudonyms disposal leaves name them by
        # (None: no disposal is attributed to a number-scoped report).
        self.pseudo = pseudo
        # Brings the Coexistence view (history chunks per number, derived from the log) up
        # to date before it is read; the runtime sets it (reporting does not import
        # coexistence: same layer).
        self.history_catch_up = history_catch_up
        self.config = config
        self.objects = objects
        self.state = state
        self.index = index
        self.log = log
        self.checkpoints = checkpoints
        self.policy_set = policy_set

    # -- entry point -------------------------------------------------------------------

    def gather(self, req: ReportRequest, progress: Progress | None = None) -> ReportFacts:
        req.check()
        report = progress or (lambda _s, _d, _t: None)
        period = Period(req.start, req.end)
        checkpoint = self.pinned_checkpoint(req.tree_size)
        size = checkpoint.size
        numbers = tuple(sorted(set(req.numbers)))
        report("log", 0, size)
        scan = self._scan_log(req, size, report)
        seed = req.seed or self._default_seed(req, numbers, size)
        summary, docs, population, chosen = self._records(req, numbers, size, seed, report)
        lock_check = self._lock_check(population, chosen, req.sample_size, seed, size, report)
        raw_mine = _scoped_raw(scan, docs, numbers)
        if raw_mine is not None:  # only the raw batches that gave this scope's records
            keep = {scan.raw_refs[leaf] for leaf in raw_mine}
            scan.locked["raw"] = {ref: until for ref, until in scan.locked.get("raw", {}).items()
                                  if ref in keep}
        if numbers:  # only the blobs whose media link records are of this scope's numbers
            AttachmentView(log=self.log, objects=self.objects, state=self.state).catch_up()
            scan.locked["media"] = {ref: until for ref, until in scan.locked.get(
                "media", {}).items() if self._blob_numbers(ref) & set(numbers)}
        # An audit batch holds events of many numbers: its check stays archive-wide, and
        # says so, in a report over some numbers.
        object_locks = self._object_lock_checks(scan, req.sample_size, seed,
                                                archive_wide={"audit"} if numbers else set())
        media = self._media(docs.media_messages)
        consent = self._consent(numbers or tuple(sorted(docs.numbers)), req.end)
        access, refused_erasures = self._audit(scan.audit or [], period, numbers)
        integrity = self._integrity(checkpoint, scan, numbers)
        disposals, disposals_unknown = self._disposals(scan, numbers)
        watched = self.config.watched_numbers or numbers or tuple(sorted(docs.numbers))
        completeness = CompletenessFacts(
            orphan_statuses=tuple(sorted(docs.status_refs - docs.message_refs)),
            history=self._history(numbers or tuple(sorted(docs.numbers)), size),
            watches=tuple(NumberWatch(n, self.config.silence_threshold_s) for n in watched),
            overdue_disposals=self._overdue(docs, min(req.end, self.clock()), size),
        )
        report("compute", 1, 1)
        return ReportFacts(
            scope=Scope(req.regulation, period, numbers, self.config.archive_name),
            policies=policies_in_force(self.policy_set, self.config.lock_mode, req.end),
            records=(),
            summary=summary,
            raw_captures=(scan.raw_captures if raw_mine is None
                          else len(raw_mine & scan.raw_in_period)),
            media=media,
            lock_check=lock_check,
            holds=self._holds(scan, period, numbers),
            disposals=disposals,
            disposals_number_unknown=disposals_unknown,
            erasures=self._erasures(period, refused_erasures, numbers),
            consent_events=consent,
            template_sends=tuple(
                TemplateSend(rid, subject, number, at, docs.categories.get(ref, "unknown"))
                for rid, subject, number, at, ref in docs.templates
            ),
            access=access,
            integrity=integrity,
            completeness=completeness,
            compliance=self.config.compliance,
            object_lock_checks=object_locks,
        )

    # -- checkpoint ---------------------------------------------------------------------

    def pinned_checkpoint(self, tree_size: int | None) -> CheckpointFact:
        """The signed checkpoint the report covers: the one of ``tree_size``, or the latest
        (signing the current tree first, so that everything logged so far is covered)."""
        if tree_size is None:
            self.checkpoints.sign_if_grown()
            signed = self.checkpoints.latest_signed()
            if signed is None:
                raise NoCheckpoint("the log is empty: nothing to report on")
            cp: Checkpoint = signed.checkpoint
            return CheckpointFact(cp.size, cp.root_hash.hex(), signed.note)
        key = checkpoint_key(self.log.prefix, tree_size)
        versions = [v for v in self.objects.list_versions(key)
                    if v.key == key and not v.is_delete_marker]
        if not versions:
            raise NoCheckpoint(f"no signed checkpoint of tree size {tree_size}",
                               code="report_checkpoint_not_found")
        note = self.objects.get(key, versions[0].version_id).decode()
        text, _ = parse_note(note)
        cp = Checkpoint.parse(text)
        if self.log.root_at(cp.size) != cp.root_hash:  # the tiles must give the signed root
            raise NoCheckpoint("the stored checkpoint does not match the log",
                               code="report_checkpoint_mismatch")
        return CheckpointFact(cp.size, cp.root_hash.hex(), note)

    def _default_seed(self, req: ReportRequest, numbers: Sequence[str], size: int) -> str:
        basis = f"{req.regulation}|{_iso(req.start)}|{_iso(req.end)}|{','.join(numbers)}|{size}"
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    # -- the log ------------------------------------------------------------------------

    def _scan_log(self, req: ReportRequest, size: int, progress: Progress) -> _LogScan:
        scan = _LogScan(0, holds_placed={}, holds_released={}, disposed=[], tombstones=set(),
                        verify=None, audit=[], previous_report=None)
        assert scan.holds_placed is not None and scan.holds_released is not None
        assert scan.disposed is not None and scan.tombstones is not None
        assert scan.audit is not None
        for start, end, chunk in self._log_chunks(size):
            for offset, data in enumerate(chunk):
                # Most leaves are records: skip them on the bytes, before parsing.
                if b',"kind":"record",' in data:
                    continue
                entry = parse_entry(data)
                f = entry.fields
                at = _time(f.get("time"))
                kind = entry.kind
                if kind in _LOCKED_KINDS:
                    until = _time(f.get("retain_until"))
                    if until is not None and at is not None and req.start <= at < req.end:
                        ref = (str(entry.key), str(entry.version_id))
                        bucket = scan.locked.setdefault(kind.value, {})
                        bucket[ref] = max(until, bucket.get(ref, until))
                elif kind is EntryKind.RETENTION_EXTENDED:
                    until = _time(f.get("retain_until"))
                    ref = (str(entry.key), str(entry.version_id))
                    if until is not None and until > scan.extended.get(ref, until - _TICK):
                        scan.extended[ref] = until
                if kind is EntryKind.DISPOSED:
                    scan.gone.add((str(entry.key), str(entry.version_id)))
                if kind is EntryKind.RAW:
                    leaf = start + offset
                    scan.raw_leaves.append(leaf)
                    scan.raw_refs[leaf] = (str(entry.key), str(entry.version_id))
                    if at is not None and req.start <= at < req.end:
                        scan.raw_captures += 1
                        scan.raw_in_period.add(leaf)
                elif kind is EntryKind.HOLD_PLACED and f.get("hold"):
                    scan.holds_placed.setdefault(str(f["hold"]), at or req.start)
                elif kind is EntryKind.HOLD_RELEASED and f.get("hold"):
                    scan.holds_released[str(f["hold"])] = at or req.start
                elif kind is EntryKind.TOMBSTONE:
                    scan.tombstones.add(str(f.get("sha256")))
                elif kind is EntryKind.DISPOSED:
                    if at is not None and req.start <= at < req.end:
                        scan.disposed.append(dict(f))
                elif kind is EntryKind.VERIFY_RUN:
                    scan.verify = dict(f)
                elif kind is EntryKind.AUDIT and f.get("event") == "verify:run":
                    # The last sweep's per-object findings, whenever it ran.
                    scan.verify_audit = (str(entry.key), str(entry.version_id),
                                         int(f.get("position", 0)))
                    if at is not None and at < req.end:
                        scan.audit.append((str(entry.key), str(entry.version_id),
                                           int(f.get("position", 0)), str(f.get("event"))))
                elif kind is EntryKind.AUDIT and at is not None and at < req.end:
                    scan.audit.append((str(entry.key), str(entry.version_id),
                                       int(f.get("position", 0)), str(f.get("event"))))
                elif (kind is EntryKind.REPORT
                      and f.get("regulation") == req.regulation.value
                      and isinstance(f.get("tree_size"), int) and f["tree_size"] <= size):
                    scan.previous_report = dict(f)
            progress("log", end, size)
        return scan

    def _log_chunks(self, size: int) -> Iterator[tuple[int, int, list[bytes]]]:
        """The log's entries ``[0, size)`` in chunks, in order; the bundles are fetched by
        ``log_read_workers`` threads a few chunks ahead (round trips, not CPU, dominate)."""
        starts = list(range(0, size, LOG_CHUNK))

        def fetch(start: int) -> list[bytes]:
            return self.log.entries(start, min(size, start + LOG_CHUNK), size)

        ahead = max(1, self.config.log_read_workers)
        with ThreadPoolExecutor(ahead) as pool:
            pending = [pool.submit(fetch, s) for s in starts[:ahead * 2]]
            for i, start in enumerate(starts):
                chunk = pending[i].result()
                if i + ahead * 2 < len(starts):
                    pending.append(pool.submit(fetch, starts[i + ahead * 2]))
                pending[i] = None  # type: ignore[call-overload]  # let the chunk go
                yield start, min(size, start + LOG_CHUNK), chunk

    # -- the index ----------------------------------------------------------------------

    def _stream(self, req: ReportRequest, numbers: Sequence[str]) -> Iterator[dict[str, Any]]:
        scan = getattr(self.index, "scan", None)
        if callable(scan):  # Elasticsearch: one point in time, only the fields used here
            yield from scan(SearchRequest(
                date_from=_iso(req.start), date_to=_iso(req.end),
                scope_numbers=list(numbers) if numbers else None, size=0,
            ), DOC_FIELDS)  # fmt: skip
            return
        cursor: str | None = None
        while True:
            result = self.index.search(SearchRequest(
                date_from=_iso(req.start), date_to=_iso(req.end),
                scope_numbers=list(numbers) if numbers else None,
                sort="time_asc", size=PAGE, cursor=cursor,
            ))  # fmt: skip
            for hit in result.hits:
                yield hit.doc
            cursor = result.next_cursor
            if cursor is None:
                return

    def _records(self, req: ReportRequest, numbers: Sequence[str], size: int, seed: str,
                 progress: Progress) -> tuple[RecordSummary, _Docs, int,
                                              list[tuple[int, str, str]]]:
        """The records of the period as a summary (counts per kind, origin, direction,
        number and day; each number's activity), the documents the other sections need,
        the population's size and the lock check's chosen (leaf, record id, policy)."""
        request = SearchRequest(
            date_from=_iso(req.start), date_to=_iso(req.end),
            scope_numbers=list(numbers) if numbers else None, size=0,
        )  # fmt: skip
        resolution = self.config.silence_threshold_s
        buckets = (req.end - req.start).total_seconds() / resolution
        if callable(getattr(self.index, "report_counts", None)) and buckets <= 10_000:
            return self._aggregated(req, request, size, seed, resolution, progress)
        return self._streamed(req, numbers, size, seed, progress)

    def _streamed(self, req: ReportRequest, numbers: Sequence[str], size: int, seed: str,
                  progress: Progress) -> tuple[RecordSummary, _Docs, int,
                                               list[tuple[int, str, str]]]:
        """One pass over every document of the period into counters (the embedded index,
        or a period too fine for the aggregation's buckets)."""
        docs = _Docs()
        cells: Counter[tuple[str, str, str, str, datetime]] = Counter()
        times: dict[str, list[datetime]] = defaultdict(list)
        total = self.index.count(SearchRequest(
            date_from=_iso(req.start), date_to=_iso(req.end),
            scope_numbers=list(numbers) if numbers else None, size=0,
        ))  # fmt: skip
        seen = 0
        for doc in self._stream(req, numbers):
            seen += 1
            if seen % 10_000 == 0:
                progress("index", seen, total)
            leaf = doc.get("leaf_index")
            if not isinstance(leaf, int) or leaf >= size:
                continue  # logged after the pinned checkpoint: not covered
            fact = _record_fact(doc)
            if fact is None or not req.start <= fact.occurred_at < req.end:
                continue
            docs.add(doc, fact, leaf)
            docs.population.append((leaf, fact.record_id, fact.policy_id))
            at = fact.occurred_at
            cells[(fact.kind, fact.origin._value_, fact.direction._value_, fact.number,
                   datetime(at.year, at.month, at.day, tzinfo=UTC))] += 1
            times[fact.number].append(at)
        progress("index", seen, total)
        activity = []
        for number, ts in times.items():
            ts.sort()
            gap = max(((b - a, a, b) for a, b in itertools.pairwise(ts)), default=None)
            activity.append(NumberActivity(number, ts[0], ts[-1], gap[1] if gap else None,
                                           gap[2] if gap else None, 0))
        population = docs.population
        chosen = population
        if req.sample_size is not None and req.sample_size < len(population):
            chosen = _sample_of(population, req.sample_size, seed)
        return summary_of(cells, activity), docs, len(population), sorted(chosen)

    def _aggregated(self, req: ReportRequest, request: SearchRequest, size: int, seed: str,
                    resolution: int, progress: Progress) -> tuple[
                        RecordSummary, _Docs, int, list[tuple[int, str, str]]]:
        """Elasticsearch: the counts and each number's activity from aggregations, the lock
        sample drawn by the node, and only the documents a section names one by one
        (media, templates, statuses, history sync, records due for disposal) streamed."""
        index: Any = self.index
        cells: Counter[tuple[str, str, str, str, datetime]] = Counter()
        for kind, origin, direction, number, day_ms, n in index.report_counts(request, size):
            cells[(_code(kind, "unknown"),
                   origin if origin in _ORIGINS else Origin.META.value,
                   direction if direction in _DIRECTIONS else Direction.NONE.value,
                   number, datetime.fromtimestamp(day_ms / 1000, UTC))] += n
        population = sum(cells.values())
        progress("index", population, population)
        activity = []
        for number, spans in index.report_activity(request, size, resolution):
            if not spans:
                continue
            gaps = [(b[0] - a[1], a[1], b[0]) for a, b in itertools.pairwise(spans)]
            gap = max(gaps, default=None)
            inner = gap if gap is not None and gap[0] > resolution * 1000 else None
            activity.append(NumberActivity(
                number, _ms(spans[0][0]), _ms(max(hi for _, hi in spans)),
                _ms(inner[1]) if inner else None, _ms(inner[2]) if inner else None,
                resolution))  # fmt: skip
        progress("sections", 0, 1)
        found: dict[str, dict[str, Any]] = {}
        cut = _iso(min(req.end, self.clock()) - OVERDUE_GRACE)
        for scan in (
            index.report_scan(request, size, DOC_FIELDS, kinds=_MESSAGE_KINDS,
                              exists="media_sha256"),
            index.report_scan(request, size, DOC_FIELDS, kinds=_MESSAGE_KINDS,
                              types=["template"]),
            index.report_scan(request, size, DOC_FIELDS,
                              kinds=["status", "history_chunk", "history_error"]),
            index.report_scan(request, size, DOC_FIELDS, overdue_before=cut),
        ):
            for doc in scan:
                found.setdefault(str(doc.get("id")), doc)
        docs = _Docs()
        for doc in found.values():
            fact = _record_fact(doc)
            if fact is not None:
                docs.add(doc, fact, int(doc["leaf_index"]))
        refs = sorted(docs.status_refs - docs.message_refs)
        for lo in range(0, len(refs), 5000):  # which statuses' messages are in the period
            for doc in index.report_scan(request, size, ("message_ref",), kinds=_MESSAGE_KINDS,
                                         message_refs=refs[lo:lo + 5000]):
                docs.message_refs.add(str(doc.get("message_ref")))
        progress("sections", 1, 1)
        fields = ("id", "record_id", "policy", "leaf_index")
        chosen = []
        every: list[tuple[int, str, str]] | None = None
        if req.sample_size is None or req.sample_size >= population:
            chosen = every = _picks(index.report_scan(request, size, fields))
        elif (span := index.report_leaf_range(request, size)) is not None:
            # The sample's leaves drawn in order from the seeded sequence over the
            # population's leaf range, kept when they are records of the population: the
            # same sample ``_sample_of`` draws from the whole population, asked in batches.
            draws = _draws(seed, *span)
            for _ in range(MAX_SAMPLE_QUERIES):
                batch = list(itertools.islice(draws, SAMPLE_BATCH))
                if not batch:
                    break
                found_at = {p[0]: p for p in _picks(
                    index.report_by_leaves(request, size, batch, fields))}
                chosen.extend(found_at[leaf] for leaf in batch if leaf in found_at)
                if len(chosen) >= req.sample_size:
                    break
            else:  # a sparse population in a wide range: draw from all of it instead
                chosen = _sample_of(_picks(index.report_scan(request, size, fields)),
                                    req.sample_size, seed)
            chosen = chosen[: req.sample_size]
        if request.scope_numbers:
            # A scoped report's raw captures are those that gave its records: their leaves.
            docs.population = (every if every is not None
                               else _picks(index.report_scan(request, size, fields)))
        numbers = {n for _, _, _, n, _ in cells}
        docs.numbers.update(numbers)
        return summary_of(cells, activity), docs, population, sorted(chosen)

    # -- the store's lock state ---------------------------------------------------------

    def _lock_check(self, population: int, chosen: list[tuple[int, str, str]],
                    sample_size: int | None, seed: str, size: int,
                    progress: Progress) -> LockCheck:
        if sample_size is None or sample_size >= population:
            mode, used_seed = LockCheckMode.FULL, None
        else:
            mode, used_seed = LockCheckMode.SAMPLE, seed
        progress("locks", 0, len(chosen))
        modes = {p.id: LockMode(p.lock_mode.value) for p in self.policy_set.enabled}
        if self.config.lock_mode == "GOVERNANCE":
            modes = dict.fromkeys(modes, LockMode.GOVERNANCE)
        done = [0]
        read_entry = self.log.entry_reader(size)  # one read of the log's size, not one each

        def observe(item: tuple[int, str, str]) -> LockObservation:
            leaf, record_id, policy_id = item
            entry = parse_entry(read_entry(leaf))
            key, version = str(entry.key), str(entry.version_id)
            required = _time(entry.fields.get("retain_until")) or datetime.min.replace(
                tzinfo=UTC)
            required = store_precision(required)
            try:
                info = self.objects.stat(key, version)
                retention = info.retention
            except ObjectNotFound:
                retention = None
            done[0] += 1
            if done[0] % 1000 == 0:
                progress("locks", done[0], len(chosen))
            return LockObservation(
                object_key=key, version_id=version, record_id=record_id,
                observed_mode=LockMode(retention.mode.value) if retention else None,
                observed_retain_until=retention.retain_until if retention else None,
                required_mode=modes.get(policy_id, LockMode.COMPLIANCE),
                required_retain_until=required,
            )  # fmt: skip

        with ThreadPoolExecutor(self.config.lock_check_workers) as pool:
            observations = tuple(pool.map(observe, chosen))
        progress("locks", len(chosen), len(chosen))
        return LockCheck(mode, population, len(observations), used_seed, observations)

    def _object_lock_checks(self, scan: _LogScan, sample_size: int | None, seed: str,
                            archive_wide: set[str] | frozenset[str] = frozenset(),
                            ) -> tuple[LockCheck, ...]:
        """Raw capture batches, media blobs and audit objects logged in the period, each
        kind checked like the records (every object, or a seeded sample of the same size)
        against its own required retain-until: the latest the log names for it (its entry,
        or a later ``retention_extended``). Disposed versions are not expected to exist."""
        strict = all(p.lock_mode.value == "COMPLIANCE" for p in self.policy_set.enabled)
        mode = (LockMode.COMPLIANCE if strict and self.config.lock_mode != "GOVERNANCE"
                else LockMode.GOVERNANCE)
        out = []
        for kind in ("raw", "media", "audit"):
            objects = scan.locked.get(kind, {})
            population = sorted(
                (key, version, max(until, scan.extended.get((key, version), until)))
                for (key, version), until in objects.items() if (key, version) not in scan.gone)
            if sample_size is None or sample_size >= len(population):
                chosen, check_mode, used_seed = population, LockCheckMode.FULL, None
            else:
                rng = random.Random(f"{seed}:{kind}")  # noqa: S311 - reproducible sampling
                chosen = sorted(rng.sample(population, sample_size))
                check_mode, used_seed = LockCheckMode.SAMPLE, seed

            def observe(item: tuple[str, str, datetime], kind: str = kind) -> LockObservation:
                key, version, required = item
                try:
                    retention = self.objects.stat(key, version).retention
                except ObjectNotFound:
                    retention = None
                return LockObservation(
                    object_key=key, version_id=version, record_id=None,
                    observed_mode=LockMode(retention.mode.value) if retention else None,
                    observed_retain_until=retention.retain_until if retention else None,
                    required_mode=mode, required_retain_until=store_precision(required),
                    kind=kind,
                )  # fmt: skip

            with ThreadPoolExecutor(self.config.lock_check_workers) as pool:
                observations = tuple(pool.map(observe, chosen))
            out.append(LockCheck(check_mode, len(population), len(observations), used_seed,
                                 observations, kind=kind, archive_wide=kind in archive_wide))
        return tuple(out)

    # -- working state ------------------------------------------------------------------

    def _media(self, messages: list[tuple[str, str]]) -> tuple[MediaFact, ...]:
        """Each message with media: fetched when the attachments view names a blob for it;
        missing when it names none (``media_missing``) or nothing at all (never fetched)."""
        if not messages:
            return ()
        AttachmentView(log=self.log, objects=self.objects, state=self.state).catch_up()
        fetched: set[str] = set()
        for key in self.state.list(ATTACHMENTS_BY_MESSAGE):
            value = self.state.get(key)
            if value is not None and json.loads(value.value).get("blob"):
                fetched.add(key[len(ATTACHMENTS_BY_MESSAGE):].split("/", 1)[0])
        return tuple(
            MediaFact(rid, ref, MediaState.FETCHED if rid in fetched else MediaState.MISSING)
            for rid, ref in sorted(messages)
        )

    def _consent(self, numbers: Sequence[str], end: datetime) -> tuple[ConsentEvent, ...]:
        from archiver.consent import ConsentView  # local: keeps imports light

        ConsentView(log=self.log, objects=self.objects, state=self.state).catch_up()
        out: list[ConsentEvent] = []
        for number in numbers:
            prefix = f"{CONSENT_VIEW_PREFIX}{quote(number, safe='')}/"
            for key in self.state.list(prefix):
                parts = key[len(prefix):].split("/")
                if len(parts) != 2 or parts[1] != "marketing" or not _PSEUDO.match(parts[0]):
                    continue
                value = self.state.get(key)
                for change in json.loads(value.value) if value else []:
                    at = _time(change.get("at"))
                    if at is None or at >= end or change.get("state") not in ("opt_in",
                                                                             "opt_out"):
                        continue
                    out.append(ConsentEvent(parts[0], ConsentKind(change["state"]), at))
        return tuple(sorted(out, key=lambda e: (e.at, e.subject, e.kind.value)))

    def _erasures(self, period: Period, refused: list[ErasureFact],
                  numbers: Sequence[str] = ()) -> tuple[ErasureFact, ...]:
        out = list(refused)
        for key in self.state.list(ERASURES_PREFIX):
            value = self.state.get(key)
            if value is None:
                continue
            doc = json.loads(value.value)
            number = doc.get("phone_number_id")
            if not _within([str(number)] if number else None, numbers):
                continue  # another number's erasure: not this report's to show
            at = _time(doc.get("when"))
            subject = str(doc.get("subject") or "")
            if at is None or not period.contains(at) or not _PSEUDO.match(subject):
                continue
            done = doc.get("status") == "done"
            out.append(ErasureFact(
                request_id=_code(doc.get("id"), "erasure"), subject=subject, requested_at=at,
                status=ErasureStatus.COMPLETED if done else ErasureStatus.PENDING,
                decided_at=_time(doc.get("finished_at")) or (at if done else None),
                reason=None,
            ))  # fmt: skip
        return tuple(sorted(out, key=lambda e: (e.requested_at, e.request_id)))

    def _holds(self, scan: _LogScan, period: Period,
               numbers: Sequence[str] = ()) -> tuple[HoldFact, ...]:
        out = []
        for doc in self._hold_docs():
            if not _within(hold_numbers(doc), numbers):
                continue  # another number's hold (or one over every number)
            hold_id = str(doc.get("id"))
            placed = (scan.holds_placed or {}).get(hold_id) or _time(doc.get("created_at"))
            if placed is None or placed >= period.end:
                continue
            released = (scan.holds_released or {}).get(hold_id)
            if released is not None and released < period.start:
                continue
            out.append(HoldFact(_code(hold_id, "hold"), placed,
                                released if released and released < period.end else None,
                                len(doc.get("items") or {})))
        return tuple(sorted(out, key=lambda h: (h.placed_at, h.hold_id)))

    def _overdue(self, docs: _Docs, at: datetime, size: int) -> tuple[str, ...]:
        """Records past their retain-until (by more than the grace), not under an open
        hold: their object versions (named by their leaves) held by no open hold."""
        due = [(leaf, rid) for leaf, rid, until in docs.retention if until < at - OVERDUE_GRACE]
        if not due:
            return ()
        held: set[str] = set()
        for doc in self._hold_docs():
            if doc.get("status") in OPEN_STATUSES:
                held.update(doc.get("items") or {})
        out = []
        read_entry = self.log.entry_reader(size)
        for leaf, rid in due:
            entry = parse_entry(read_entry(leaf))
            if item_id(str(entry.key), str(entry.version_id)) not in held:
                out.append(rid)
        return tuple(sorted(out))

    def _hold_docs(self) -> Iterator[dict[str, Any]]:
        # As ``HoldRegistry.all``: one document per hold, skipping the registry's own keys.
        for key in self.state.list(HOLDS_PREFIX):
            name = key[len(HOLDS_PREFIX):]
            if name.startswith("_") or "/" in name:
                continue
            value = self.state.get(key)
            if value is not None:
                yield json.loads(value.value)

    def _disposals(self, scan: _LogScan, numbers: Sequence[str] = ()) -> tuple[
            tuple[DisposalFact, ...], int]:
        """The records disposed in the period, and (in a report over some numbers) how many
        were left out because their leaf names no business number. A disposal leaf names
        the record's number by its pseudonym (``business``): the record, its index document
        and its number are gone with it."""
        out = []
        unknown = 0
        mine = ({self.pseudo.business(n) for n in numbers}
                if numbers and self.pseudo is not None else set())
        for f in scan.disposed or []:
            name = str(f.get("key", "")).rsplit("/", 1)[-1]
            if not name.startswith("r_") or not _PSEUDO.match(name):
                continue  # raw batches and blobs are not records
            if numbers:
                business = f.get("business")
                if not isinstance(business, str) or self.pseudo is None:
                    unknown += 1  # an older leaf: not attributed, only counted
                    continue
                if business not in mine:
                    continue  # another number's disposal
            t_sha = f.get("tombstone_sha256")
            tomb = None
            if isinstance(t_sha, str) and t_sha in (scan.tombstones or set()):
                # The tombstone's identity as a record-id-shaped pseudonym of its hash.
                tomb = "r_" + _b32(bytes.fromhex(t_sha)[:20])
            at = _time(f.get("time"))
            assert at is not None
            out.append(DisposalFact(name, at, _code(f.get("policy"), "unknown"), tomb))
        return tuple(sorted(out, key=lambda d: (d.disposed_at, d.record_id))), unknown

    # -- which number an object belongs to ----------------------------------------------

    def _record_number(self, key: str, version: str) -> str | None:
        """The business number a record version's clear header names; when the version
        cannot be read as a record (tampered with, or a forged extra version), the number
        of the record's index document, so a tampered record stays its number's finding.
        None: neither (disposed, or not a record)."""
        try:
            header = Record.parse(self.objects.get(key, version)).header
        except (StoreError, RecordError, ValueError):
            header = None
        business = header.get("business") if isinstance(header, dict) else None
        number = business.get("phone_number_id") if isinstance(business, dict) else None
        if not number and key.startswith(RECORDS_PREFIX):
            record_id = key.rsplit("/", 1)[-1]
            try:
                doc = self.index.get(record_id) if _PSEUDO.match(record_id) else None
            except (ArchiverError, SearchError):
                doc = None
            number = (doc or {}).get("phone_number_id")
        return str(number) if number else None

    def _blob_numbers(self, ref: tuple[str, str]) -> set[str]:
        """The numbers of the media link records that reference one blob version (the
        attachments view, caught up by ``gather`` first)."""
        view = AttachmentView(log=self.log, objects=self.objects, state=self.state)
        out = set()
        for a in view.of_blob(*ref):
            number = self._record_number(*a.link)
            if number:
                out.add(number)
        return out

    def _object_numbers(self, key: str, version: str) -> set[str]:
        """The numbers an object a verify finding names belongs to: a record's header, a
        blob's link records; nothing for anything else (raw batches hold many numbers'
        events, audit batches many numbers' events, the tree every number's)."""
        if key.startswith(RECORDS_PREFIX) and version:
            number = self._record_number(key, version)
            return {number} if number else set()
        if key.startswith(MEDIA_OBJECT_PREFIX) and version:
            return self._blob_numbers((key, version))
        return set()

    # -- the audit trail ----------------------------------------------------------------

    def _audit(self, refs: list[tuple[str, str, int, str]], period: Period,
               numbers: Sequence[str]) -> tuple[AccessFacts, list[ErasureFact]]:
        wanted = [r for r in refs
                  if r[3] in _ACCESS or r[3] in _REFUSALS or r[3] == _SIGN_IN_FAILED]
        objects: dict[tuple[str, str], list[bytes]] = {}
        events: list[AccessEvent] = []
        refused: dict[tuple[str, str], int] = defaultdict(int)
        sign_in: dict[str, int] = defaultdict(int)
        erasures: list[ErasureFact] = []
        scope = set(numbers)
        for key, version, position, name in wanted:
            if (key, version) not in objects:
                try:
                    objects[(key, version)] = self.objects.get(key, version).splitlines()
                except StoreError:
                    objects[(key, version)] = []
            lines = objects[(key, version)]
            if position >= len(lines):
                continue
            event = json.loads(lines[position])
            details = event.get("details") or {}
            # Security aggregates are written when their window ends: they count when the
            # window started, so a refusal at 23:59:30 stays in its day.
            at = _time(details.get("window_start")) or _time(event.get("at"))
            if at is None or not period.contains(at):
                continue
            concerns = event.get("numbers")
            if scope and concerns and not scope.intersection(concerns):
                continue
            actor = event.get("actor") or {}
            who = str(actor.get("token_id") or actor.get("name") or "anonymous")
            if name == _SIGN_IN_FAILED or name == "auth:request_refused":
                # One aggregate per source and minute: its reasons carry the counts.
                reasons = details.get("reasons") or {str(details.get("reason") or name): int(
                    details.get("count") or 1)}
                for reason, n in reasons.items():
                    if name == _SIGN_IN_FAILED:
                        sign_in[_code(reason, "token_invalid")] += int(n)
                    else:
                        refused[("anonymous", _code(reason, "forbidden"))] += int(n)
                continue
            if name in _ACCESS:
                events.append(AccessEvent(who, str(actor.get("role") or "unknown"),
                                          _ACCESS[name], at))
            elif name == "erasure:refused":
                refused[(who, "erasure_refused")] += 1
                inner = details.get("details") or {}
                subject = str(inner.get("subject") or "")
                if _PSEUDO.match(subject) and subject.startswith("s_"):
                    status, reason = _erasure_refusal(details.get("code"), inner)
                    erasures.append(ErasureFact(
                        request_id="refused-" + hashlib.sha256(
                            lines[position]).hexdigest()[:16],
                        subject=subject, requested_at=at, status=status,
                        decided_at=at if status is ErasureStatus.REFUSED else None,
                        reason=reason,
                        note=str(details.get("reason") or ""),
                    ))  # fmt: skip
            else:
                refused[("anonymous", _code(details.get("reason") or name, "refused"))] += int(
                    details.get("count") or 1)
        access = AccessFacts(
            events=tuple(sorted(events, key=lambda e: (e.at, e.actor, e.action.value))),
            sign_in_failures=sum(sign_in.values()),
            refused=tuple(RefusedRequest(a, c, n) for (a, c), n in sorted(refused.items())),
            sign_in_by_reason=tuple(RefusedRequest("anonymous", c, n)
                                    for c, n in sorted(sign_in.items())),
        )
        return access, erasures

    # -- integrity ----------------------------------------------------------------------

    def _integrity(self, checkpoint: CheckpointFact, scan: _LogScan,
                   numbers: Sequence[str] = ()) -> IntegrityFacts:
        previous = None
        consistency = Consistency.FIRST_REPORT
        prev = scan.previous_report
        if prev is not None:
            previous = CheckpointFact(int(prev["tree_size"]), str(prev["root_hash"]))
            try:
                proof = self.log.consistency_proof(previous.size, checkpoint.size)
                merkle.verify_consistency(previous.size, checkpoint.size,
                                          bytes.fromhex(previous.root_hash),
                                          bytes.fromhex(checkpoint.root_hash), proof)
                consistency = Consistency.VERIFIED
            except (LedgerError, ValueError):
                consistency = Consistency.FAILED
        verify = None
        if scan.verify is not None:
            v = scan.verify
            total = int(v.get("findings") or 0)
            kinds = [str(k) for k in v.get("kinds") or []]
            detail = self._verify_detail(scan.verify_audit, v)
            if detail is not None:  # per object, from the run's own audit event
                listed = tuple(
                    VerifyFinding(_code(o.get("kind"), "finding"),
                                  str(o.get("key") or f"tree:{v.get('tree_size')}"),
                                  str(o.get("version_id") or ""))
                    for o in detail.get("objects") or [] if isinstance(o, dict))
                by_kind = tuple(RefusedRequest("verify", _code(k, "finding"), int(n))
                                for k, n in sorted((detail.get("by_kind") or {}).items()))
            else:  # a run recorded without its audit event: per kind only
                listed = tuple(VerifyFinding(_code(k, "finding"), f"tree:{v.get('tree_size')}")
                               for k in kinds) if total else ()
                by_kind = ()
            total = max(total, len(listed))
            unattributed = 0
            if numbers:
                # Only findings on an object of this scope's numbers are the scope's: the
                # rest (another number's object, one no longer readable, the tree, any the
                # sweep counted without listing) are counted as archive-wide, never named.
                listed = tuple(f for f in listed if _within(
                    sorted(self._object_numbers(f.object_key, f.version_id)), numbers))
                unattributed, total, by_kind = total - len(listed), len(listed), ()
            verify = VerifySweep(
                finished_at=_time(v.get("time")) or datetime.now(UTC),
                objects_checked=int(v.get("tree_size") or 0),
                findings=listed,
                total_findings=total,
                by_kind=by_kind,
                unattributed=unattributed,
            )  # fmt: skip
        return IntegrityFacts(checkpoint, previous, consistency, verify)

    def _verify_detail(self, ref: tuple[str, str, int] | None,
                       run: dict[str, Any]) -> dict[str, Any] | None:
        """The details of the ``verify:run`` audit event of ``run`` (same tree size and
        finding count), or None when there is none to match."""
        if ref is None:
            return None
        key, version, position = ref
        try:
            lines = self.objects.get(key, version).splitlines()
        except StoreError:
            return None
        if position >= len(lines):
            return None
        details = json.loads(lines[position]).get("details") or {}
        if (details.get("tree_size") != run.get("tree_size")
                or int(details.get("findings") or 0) != int(run.get("findings") or 0)):
            return None
        return dict(details)

    def _history(self, numbers: Sequence[str], size: int) -> tuple[HistoryPhase, ...]:
        """Per number and phase: the history chunks seen (Meta's ``history`` webhooks,
        logged as ``history_chunk`` records) and their progress, from the Coexistence view
        in working state — derived from the log, keyed by leaf, so only leaves inside the
        pinned tree count and the figures can be recomputed from the archive. A phase is
        complete once the sync reports 100 % or a later phase has begun; a number whose
        history Meta reported as failed or declined, with no chunk, shows phase 0 at 0 %."""
        if self.history_catch_up is not None:
            try:
                self.history_catch_up()
            except ArchiverError as exc:
                # An unreadable (tampered) record stops the view; the report still runs on
                # the view as it stands, and the verify sweep names the object.
                log.warning("report_history_view_stale", error_code=exc.code)
        out: list[HistoryPhase] = []
        for number in numbers:
            value = self.state.get(COEXISTENCE_VIEW_PREFIX + quote(number, safe=""))
            if value is None:
                continue
            view = json.loads(value.value)
            chunks = [c for leaf, c in (view.get("history_chunks") or {}).items()
                      if leaf.isdigit() and int(leaf) < size and isinstance(c, dict)]
            errors = [e for leaf, errs in (view.get("history_errors") or {}).items()
                      if leaf.isdigit() and int(leaf) < size for e in errs or []]
            phases: dict[int, list[int]] = {}  # phase -> [chunks, highest progress]
            for c in chunks:
                phase, pct = c.get("phase"), c.get("progress")
                if not isinstance(phase, int) or isinstance(phase, bool) or phase < 0:
                    continue
                seen = phases.setdefault(phase, [0, 0])
                seen[0] += 1
                if isinstance(pct, int) and not isinstance(pct, bool):
                    seen[1] = max(seen[1], min(max(pct, 0), 100))
            if not phases and not errors:
                continue
            overall = max((p[1] for p in phases.values()), default=0)
            if overall >= 100:
                state = "complete"
            elif any(e.get("code") == HISTORY_DECLINED for e in errors):
                state = "declined"
            elif errors:
                state = "failed"
            else:
                state = "in_progress"
            if not phases:
                phases[0] = [0, 0]
            last = max(phases)
            for phase, (n, pct) in sorted(phases.items()):
                done = overall >= 100 or phase < last
                out.append(HistoryPhase(number, phase, done, pct, n, state))
        return tuple(out)


class _Docs:
    """What one pass over the index documents collects besides the records."""

    def __init__(self) -> None:
        self.population: list[tuple[int, str, str]] = []  # (leaf, record id, policy)
        self.numbers: set[str] = set()
        self.media_messages: list[tuple[str, str]] = []
        self.status_refs: set[str] = set()
        self.message_refs: set[str] = set()
        self.categories: dict[str, str] = {}
        self.templates: list[tuple[str, str, str, datetime, str]] = []
        self.history: list[dict[str, Any]] = []
        self.retention: list[tuple[int, str, datetime]] = []  # (leaf, record id, until)

    def add(self, doc: dict[str, Any], fact: RecordFact, leaf: int) -> None:
        self.retention.append((leaf, fact.record_id, fact.required_retain_until))
        self.numbers.add(fact.number)
        ref = doc.get("message_ref")
        kind = fact.kind
        if kind in _MESSAGE_KINDS:
            if isinstance(ref, str):
                self.message_refs.add(ref)
            if doc.get("media_sha256"):
                self.media_messages.append(
                    (fact.record_id, "h_" + _b32(bytes.fromhex(
                        hashlib.sha256(str(doc["media_sha256"]).encode()).hexdigest())[:20])))
            if (doc.get("type") == "template" and fact.direction is Direction.OUTBOUND
                    and fact.subject is not None and isinstance(ref, str)):
                self.templates.append((fact.record_id, fact.subject, fact.number,
                                       fact.occurred_at, ref))
        elif kind == "status" and isinstance(ref, str) and _PSEUDO.match(ref):
            self.status_refs.add(ref)
            category = doc.get("pricing_category")
            if isinstance(category, str) and category:
                self.categories.setdefault(ref, _code(category, "unknown"))
        elif kind in ("history_chunk", "history_error"):
            self.history.append(doc)


def store_precision(at: datetime) -> datetime:
    """``at`` truncated to the millisecond. S3 (MinIO) keeps retain-until dates to the
    millisecond: compared at microseconds, every lock set from a time with microseconds
    would look a fraction too short."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _draws(seed: str, lo: int, hi: int) -> Iterator[int]:
    """Distinct leaf indices of ``lo..hi`` in the order ``random.Random(seed)`` draws them
    (``randrange``, repeats skipped): the lock check's sampling order."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not secrecy
    seen: set[int] = set()
    n = hi - lo + 1
    while len(seen) < n:
        leaf = rng.randrange(lo, hi + 1)
        if leaf not in seen:
            seen.add(leaf)
            yield leaf


def _sample_of(population: list[tuple[int, str, str]], k: int,
               seed: str) -> list[tuple[int, str, str]]:
    """The first ``k`` records of ``population`` in the seeded draw order over its leaf
    range: a uniform random sample without replacement, reproducible from the seed."""
    if not population:
        return []
    by_leaf = {p[0]: p for p in population}
    out = []
    for leaf in _draws(seed, min(by_leaf), max(by_leaf)):
        if leaf in by_leaf:
            out.append(by_leaf[leaf])
            if len(out) == k:
                break
    return out


def _picks(docs: Iterable[dict[str, Any]]) -> list[tuple[int, str, str]]:
    out = []
    for doc in docs:
        rid = doc.get("record_id") or doc.get("id")
        leaf = doc.get("leaf_index")
        if isinstance(rid, str) and isinstance(leaf, int):
            out.append((leaf, rid, _code(doc.get("policy"), "unknown")))
    return out


def _ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


def _within(concerns: Sequence[str] | None, numbers: Sequence[str]) -> bool:
    """Whether a thing concerning ``concerns`` belongs in a report over ``numbers``: every
    thing in a report over every number (``()``); in a number-scoped one only a thing
    concerning a non-empty set of its numbers, as ``Principal.covers`` decides for a
    scoped token (a report over A is read by tokens scoped to A)."""
    if not numbers:
        return True
    wanted = set(concerns or ())
    return bool(wanted) and wanted <= set(numbers)


def _scoped_raw(scan: _LogScan, docs: _Docs, numbers: Sequence[str]) -> set[int] | None:
    """The raw leaves of a number-scoped report: those that gave a record of its numbers
    (a capture names no number in its leaf: its records do). None: every raw leaf."""
    if not numbers:
        return None
    mine: set[int] = set()
    for leaf, _rid, _policy in docs.population:
        i = bisect.bisect_left(scan.raw_leaves, leaf) - 1
        if i >= 0:
            mine.add(scan.raw_leaves[i])
    return mine


def _b32(raw: bytes) -> str:
    import base64

    return base64.b32encode(raw).decode().rstrip("=").lower()


def _record_fact(doc: dict[str, Any]) -> RecordFact | None:
    rid = doc.get("record_id") or doc.get("id")
    at = _time(doc.get("ts") or doc.get("captured_at"))
    number = doc.get("phone_number_id")
    if not isinstance(rid, str) or not _PSEUDO.match(rid) or at is None or not number:
        return None
    subject = doc.get("subject")
    origin = str(doc.get("origin") or "meta")
    direction = str(doc.get("direction") or "none")
    return RecordFact(
        record_id=rid,
        kind=_code(doc.get("kind"), "unknown"),
        origin=Origin(origin) if origin in _ORIGINS else Origin.META,
        direction=Direction(direction) if direction in _DIRECTIONS else Direction.NONE,
        number=str(number),
        occurred_at=at,
        subject=subject if isinstance(subject, str) and _PSEUDO.match(subject) else None,
        policy_id=_code(doc.get("policy"), "unknown"),
        required_retain_until=_time(doc.get("retain_until")) or at + timedelta(0),
    )
