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
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from archiver.ingest.ports import LogAppender
from archiver.ledger.entry import EntryKind, make_entry
from archiver.logs import get_logger
from archiver.records.canonical import dumps as canonical_json
from archiver.store.port import LockMode, ObjectStore, Retention

log = get_logger("archiver.audit")

AUDIT_PREFIX = "audit/"


class AuditAction(StrEnum):
    SEARCH_EXECUTED = "search:executed"
    THREAD_VIEWED = "thread:viewed"
    RECORD_VIEWED = "record:viewed"
    AUDIT_LISTED = "audit:listed"
    HOLD_PLACED = "hold:placed"
    HOLD_RELEASED = "hold:released"
    ERASURE_REQUESTED = "erasure:requested"
    ERASURE_REFUSED = "erasure:refused"
    CONSENT_RECORDED = "consent:recorded"
    MESSAGE_SENT = "message:sent"
    EXPORT_CREATED = "export:created"
    REPORT_CREATED = "report:created"
    SIGNATURE_REFUSED = "webhook:signature_refused"
    HANDSHAKE_REFUSED = "webhook:handshake_refused"
    VERIFY_RUN = "verify:run"
    COEXISTENCE_SYNC_REQUESTED = "coexistence:sync_requested"
    COEXISTENCE_SYNC_FAILED = "coexistence:sync_failed"


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

    def record(
        self,
        action: AuditAction,
        actor: Actor,
        *,
        concerns: Iterable[str | None] | None = None,
        **details: Any,
    ) -> dict[str, Any]:
        """Queue one event. ``numbers`` in the event are the business numbers
        (phone_number_ids) it concerns: ``concerns`` when given (a hold's or a record's
        number), else the actor's token numbers; none means it concerns no particular
        number, and only unscoped readers of ``/v1/audit`` see it."""
        named = actor.numbers if concerns is None else [n for n in concerns if n]
        event = {
            "event": action.value,
            "at": self.clock().isoformat(),
            "actor": {"token_id": actor.token_id, "name": actor.name, "role": actor.role},
            "numbers": sorted(set(named)) if named else None,
            "details": _jsonable(details),
        }
        with self._lock:
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
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_interval)
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
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception:
                with self._lock:
                    self._pending = batch + self._pending
                raise
            return len(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        now = self.clock()
        lines = [canonical_json(e) for e in batch]  # RFC 8785, fast path for plain data
        data = b"\n".join(lines) + b"\n"
        key = f"{AUDIT_PREFIX}{now:%Y/%m/%d}/{now:%Y%m%dT%H%M%S.%f}Z-{secrets.token_hex(4)}"
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
        return value if value.is_finite() else str(value)  # type: ignore[attr-defined]
    return str(value)
