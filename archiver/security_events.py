"""Security events: refused webhook signatures and failed handshakes, failed API sign-ins
(missing, malformed, unknown, expired or revoked bearer tokens) and wrong-role requests.

Metadata only (never a body): what happened, from which peer, a reason code, sizes.
Strangers must not be able to write into the 10-year locked audit store at will, so:

* **Nothing a stranger sends is kept whole.** A header such as ``User-Agent`` becomes
  ``{"prefix": <first 64 characters>, "chars": <length>, "sha256": <of the whole>}``
  (:func:`stranger_text`).
* **Refusals are aggregated.** Each refused request counts in
  ``archiver_security_events_total{kind, reason}`` (Prometheus, per request) and in a
  window of ``window_s`` seconds (60) per ``(kind, peer)``; one audit event per window
  and source carries the count, the reasons, the body bytes and at most
  :data:`MAX_AGENTS` distinct user agents (the rest counted). At most
  :data:`MAX_SOURCES` sources per window and kind are told apart; the others share the
  peer ``"other"``. So the audit store and the log grow by a bounded amount per window,
  however many requests arrive, and the memory held is bounded too.
* **They are sheddable.** The aggregates go to the audit trail as sheddable events
  (``archiver.audit``): when its queue is backed up (store down) they are dropped and
  counted rather than crowd out the events the archive's promises depend on.

Windows are written when they end (checked on each refusal and by the audit thread's
``flush_due`` before each flush) and on shutdown.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request

from archiver.logs import get_logger
from archiver.metrics import REGISTRY

log = get_logger("archiver.security")

SECURITY_EVENTS = Counter(
    "archiver_security_events_total",
    "Refused requests by kind and reason",
    ["kind", "reason"],
    registry=REGISTRY,
)

PREFIX_CHARS = 64
MAX_SOURCES = 256
MAX_AGENTS = 8
OTHER = "other"


class SecurityEvent(StrEnum):
    SIGNATURE_REFUSED = "webhook:signature_refused"
    HANDSHAKE_REFUSED = "webhook:handshake_refused"
    # API bearer tokens: missing, malformed, unknown, expired or revoked (reason = the error
    # code answered). Nothing of the token is kept: a stranger's guess is not evidence.
    SIGN_IN_FAILED = "auth:sign_in_failed"
    # A valid token whose role may not do what it asked (reason ``role_forbidden``).
    REQUEST_REFUSED = "auth:request_refused"


def stranger_text(value: str | None, keep: int = PREFIX_CHARS) -> dict[str, Any] | None:
    """What is kept of a value a stranger chose: a short prefix, its length, its hash."""
    if value is None:
        return None
    return {
        "prefix": value[:keep],
        "chars": len(value),
        "sha256": hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest(),
    }


@dataclass
class _Window:
    start: float
    count: int = 0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)  # sha256 -> text+count
    agents_other: int = 0


class SecurityRecorder:
    """Counts refused requests and hands one aggregate per window and source to ``sink``."""

    def __init__(
        self,
        sink: Callable[[dict[str, Any]], None] | None = None,
        *,
        window_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._sink = sink
        self.window_s = window_s
        self.clock = clock or (lambda: datetime.now(UTC).timestamp())
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str, float], _Window] = {}

    def record(self, kind: SecurityEvent, request: Request, **fields: Any) -> dict[str, Any]:
        """Count one refused request; returns what the log says of it."""
        reason = str(fields.get("reason", ""))
        size = int(fields.get("size", 0) or 0)
        peer = request.client.host if request.client else None
        agent = stranger_text(request.headers.get("user-agent"))
        SECURITY_EVENTS.labels(kind=kind.value, reason=reason).inc()
        now = self.clock()
        start = now - now % self.window_s
        due: list[dict[str, Any]] = []
        with self._lock:
            due = self._take(lambda key: key[2] < start)
            sources = {k[1] for k in self._windows if k[0] == kind.value and k[2] == start}
            source = str(peer)
            if source not in sources and len(sources) >= MAX_SOURCES:
                source = OTHER
            key = (kind.value, source, start)
            window = self._windows.get(key)
            first = window is None
            if window is None:
                window = self._windows[key] = _Window(start)
            window.count += 1
            window.bytes += size
            window.reasons[reason] = window.reasons.get(reason, 0) + 1
            if agent is not None:
                seen = window.agents.get(agent["sha256"])
                if seen is not None:
                    seen["count"] += 1
                elif len(window.agents) < MAX_AGENTS:
                    window.agents[agent["sha256"]] = {**agent, "count": 1}
                else:
                    window.agents_other += 1
        event = {"event": kind.value, "peer": peer, "reason": reason, "size": size,
                 "user_agent": agent}  # fmt: skip
        if first:  # one log line per source and window; the aggregate says the rest
            log.warning(kind.value, **{k: v for k, v in event.items() if k != "event"})
        self._emit(due)
        return event

    def flush_due(self, *, force: bool = False) -> int:
        """Hand over the windows that have ended (all of them with ``force``)."""
        now = self.clock()
        start = now - now % self.window_s
        with self._lock:
            due = self._take(lambda key: force or key[2] < start)
        self._emit(due)
        return len(due)

    def _take(self, pick: Callable[[tuple[str, str, float]], bool]) -> list[dict[str, Any]]:
        keys = [k for k in self._windows if pick(k)]
        return [self._aggregate(k, self._windows.pop(k)) for k in sorted(keys)]

    def _aggregate(self, key: tuple[str, str, float], w: _Window) -> dict[str, Any]:
        kind, source, start = key
        return {
            "event": kind,
            "aggregated": True,
            "window_start": datetime.fromtimestamp(start, UTC).isoformat(),
            "window_s": self.window_s,
            "peer": None if source == "None" else source,
            "count": w.count,
            "bytes": w.bytes,
            "reasons": dict(sorted(w.reasons.items())),
            "user_agents": sorted(w.agents.values(), key=lambda a: (-a["count"], a["sha256"])),
            "user_agents_other": w.agents_other,
        }

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            if event["count"] > 1:
                log.warning("security_refusals_aggregated", kind=event["event"],
                            peer=event["peer"], count=event["count"])  # fmt: skip
            if self._sink is not None:
                self._sink(event)
