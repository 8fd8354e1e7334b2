"""Reading is an event: audit events, group-committed into the evidence store and the log.

``AuditTrail.record(...)`` returns at once; a background thread writes every event
queued in the last ``flush_interval`` (default 0.25 s) as one object
``audit/<YYYY>/<MM>/<DD>/<batch>`` (JSON lines, each line RFC 8785 canonical) and
appends one ``audit`` leaf per event naming that object and the event's position and
hash. An event is therefore durable within about a second, and never in the request's
path. ``flush()`` forces it (tests, shutdown).

Event names are ``subject:action`` (``AuditAction``). Each event names the business
numbers (``phone_number_id``) it concerns, so ``/v1/audit`` can scope it. The object
holds who (token id, name, role), what (query, filters, ids), how many results, and
when; the log leaf holds only the name, the hash and the object's identity, never the
query itself.

The queue is bounded (``max_pending``, ``ARCHIVER_AUDIT_QUEUE_MAX``; events in flight
count), so a store outage cannot exhaust memory. Two kinds of events:

* **kept** (every event by default: reads and writes by authenticated users, system
  events): never dropped. When the queue is full, ``record`` raises
  ``AuditUnavailable`` so the read fails instead of going unaudited; ``admit()``
  (called by every authenticated route before it does anything) refuses new requests a
  little earlier, leaving room for the events of requests already admitted.
* **sheddable** (``record(..., sheddable=True)``): only the aggregated refusals of
  unauthenticated requests (``archiver.security_events``). They may use a quarter of the
  queue; beyond that they are dropped and counted (``archiver_audit_events_shed_total``),
  so strangers can never crowd out the events the archive's promises depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from archiver.errors import Unavailable
from archiver.keyspace import audit_key
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.metrics import AUDIT_QUEUE_DEPTH, AUDIT_REFUSED, AUDIT_SHED
from archiver.records.canonical import dumps as canonical_json
from archiver.store.port import LockMode, ObjectStore, Retention

log = get_logger("archiver.audit")



class AuditAction(StrEnum):
    SEARCH_EXECUTED = "search:executed"
    THREAD_VIEWED = "thread:viewed"
    RECORD_VIEWED = "record:viewed"
    AUDIT_LISTED = "audit:listed"
    HOLD_PLACED = "hold:placed"
    HOLD_RELEASED = "hold:released"
    DISPOSITION_APPROVED = "disposition:approved"
    ERASURE_REQUESTED = "erasure:requested"
    ERASURE_REFUSED = "erasure:refused"
    CONSENT_RECORDED = "consent:recorded"
    MESSAGE_SENT = "message:sent"
    EXPORT_CREATED = "export:created"
    EXPORT_REQUESTED = "export:requested"
    EXPORT_FINISHED = "export:finished"
    EXPORT_VIEWED = "export:viewed"
    EXPORT_DOWNLOADED = "export:downloaded"
    CASE_CREATED = "case:created"
    CASE_UPDATED = "case:updated"
    CASE_HOLD_PLACED = "case:hold_placed"
    CASE_HOLD_RELEASED = "case:hold_released"
    CASE_CLOSED = "case:closed"
    CASE_REOPENED = "case:reopened"
    CASE_CUSTODIAN_ERASED = "case:custodian_erased"
    REPORT_CREATED = "report:created"
    REPORT_LISTED = "report:listed"
    REPORT_VIEWED = "report:viewed"
    REPORT_DOWNLOADED = "report:downloaded"
    SIGNATURE_REFUSED = "webhook:signature_refused"
    HANDSHAKE_REFUSED = "webhook:handshake_refused"
    SIGN_IN_FAILED = "auth:sign_in_failed"
    REQUEST_REFUSED = "auth:request_refused"
    VERIFY_RUN = "verify:run"
    COEXISTENCE_SYNC_REQUESTED = "coexistence:sync_requested"
    COEXISTENCE_SYNC_FAILED = "coexistence:sync_failed"


class AuditUnavailable(Unavailable):
    """The audit queue is full (the store is not taking writes): refuse the request
    rather than serve it unaudited."""

    code = "audit_unavailable"


@dataclass(frozen=True, slots=True)
class Actor:
    token_id: str | None
    name: str
    role: str
    # The token's business numbers (phone_number_ids; None = every number): what an event
    # concerns unless the caller names the numbers itself (``AuditTrail.record``).
    numbers: tuple[str, ...] | None = None


SYSTEM = Actor(token_id=None, name="system", role="system")


class AuditTrail:
    def __init__(
        self,
        objects: ObjectStore,
        log_appender: LogAppender,
        *,
        retention_days: int,
        lock_mode: LockMode,
        flush_interval: float = 0.25,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_pending: int = 10_000,
    ) -> None:
        self.objects = objects
        self.log = log_appender
        self.retention_days = retention_days
        self.lock_mode = lock_mode
        self.flush_interval = flush_interval
        self.clock = clock
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.max_pending = max(1, max_pending)
        self.shed_above = max(1, self.max_pending // 4)
        self.admit_below = self.max_pending - max(1, self.max_pending // 10)
        self._inflight = 0
        # Called before each flush (the security recorder's ended windows).
        self.before_flush: list[Callable[[], object]] = []

    def depth(self) -> int:
        """Events queued or being written."""
        return len(self._pending) + self._inflight

    def admit(self) -> None:
        """Raise AuditUnavailable when the queue is too full to promise an audit event to a
        new request (routes call it before doing anything)."""
        if self.depth() >= self.admit_below:
            AUDIT_REFUSED.labels("admit").inc()
            raise AuditUnavailable(
                "the audit trail cannot take more events now; retry", details={"retry": True}
            )

    def record(
        self,
        action: AuditAction,
        actor: Actor,
        *,
        concerns: Iterable[str | None] | None = None,
        sheddable: bool = False,
        **details: Any,
    ) -> dict[str, Any]:
        """Queue one event. ``numbers`` in the event are the business numbers
        (phone_number_ids) it concerns: ``concerns`` when given (a hold's or a record's
        number), else the actor's token numbers; none means it concerns no particular
        number, and only unscoped readers of ``/v1/audit`` see it.

        Raises AuditUnavailable when the queue is full (kept events); a ``sheddable``
        event is dropped and counted instead."""
        named = actor.numbers if concerns is None else [n for n in concerns if n]
        event = {
            "event": action.value,
            "at": self.clock().isoformat(),
            "actor": {"token_id": actor.token_id, "name": actor.name, "role": actor.role},
            "numbers": sorted(set(named)) if named else None,
            "details": _jsonable(details),
        }
        with self._lock:
            depth = len(self._pending) + self._inflight
            if sheddable and depth >= self.shed_above:
                AUDIT_SHED.labels(action.value).inc()
                return event
            if depth >= self.max_pending:
                AUDIT_REFUSED.labels(action.value).inc()
                raise AuditUnavailable(
                    "the audit trail cannot take more events now; retry",
                    details={"retry": True},
                )
            self._pending.append(event)
        if self._thread is None:
            self.flush()  # no background thread (CLI): write now
        return event

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._before_flush()
        self.flush()

    def _before_flush(self) -> None:
        for hook in self.before_flush:
            try:
                hook()
            except Exception:  # a feeder must not stop the audit thread
                log.exception("audit_feeder_failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_interval)
            self._before_flush()
            AUDIT_QUEUE_DEPTH.set(self.depth())
            try:
                self.flush()
            except Exception:  # keep the events; the next round retries them
                self.failures += 1
                log.exception("audit_flush_failed")

    def flush(self) -> int:
        """Write what is queued; return how many events were written."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                self._inflight = len(batch)
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception:
                with self._lock:
                    self._pending = batch + self._pending
                raise
            finally:
                with self._lock:
                    self._inflight = 0
            return len(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        now = self.clock()
        lines = [canonical_json(e) for e in batch]  # RFC 8785, fast path for plain data
        data = b"\n".join(lines) + b"\n"
        key = audit_key(now, secrets.token_hex(4))
        until = now + timedelta(days=self.retention_days)
        put = self.objects.put(
            key,
            data,
            retention=Retention(self.lock_mode, until),
            content_type="application/x-ndjson",
            fresh=True,
        )
        entries = [
            make_entry(
                EntryKind.AUDIT,
                time=now,
                key=put.key,
                version_id=put.version_id,
                sha256=put.sha256,
                size=put.size,
                retain_until=until,
                event=e["event"],
                position=i,
                event_sha256=hashlib.sha256(line).hexdigest(),
            ).data
            for i, (e, line) in enumerate(zip(batch, lines, strict=True))
        ]
        self.log.append(entries)

    def events(
        self, *, since: datetime | None = None, action: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Audit events from the store, oldest first (reads the objects named in the log)."""
        from archiver.ledger.entry import parse_entry

        size = self.log.size()
        seen: dict[tuple[str, str], list[bytes]] = {}
        for start in range(0, size, 1000):
            for data in self.log.entries(start, min(size, start + 1000)):
                entry = parse_entry(data)
                if entry.kind is not EntryKind.AUDIT:
                    continue
                ident = (str(entry.key), str(entry.version_id))
                if ident not in seen:
                    seen[ident] = self.objects.get(*ident).splitlines()
                line = seen[ident][int(entry.fields["position"])]
                event: dict[str, Any] = json.loads(line)
                if action and event["event"] != action:
                    continue
                if since and datetime.fromisoformat(event["at"]) < since:
                    continue
                yield event


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN/Infinity
    return str(value)
