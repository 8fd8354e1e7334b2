"""Security events: refused webhook signatures, failed handshakes, refused tokens.

Metadata only (never a body): what happened, when, from which peer, a reason code,
the body size. Each goes to the structured log, a Prometheus counter, and the audit
stream (``archiver.audit``) so it is on the record like every other event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request

from archiver.logs import get_logger

log = get_logger("archiver.security")

SECURITY_EVENTS = Counter(
    "archiver_security_events_total", "Refused requests by kind and reason", ["kind", "reason"]
)


class SecurityEvent(StrEnum):
    SIGNATURE_REFUSED = "webhook:signature_refused"
    HANDSHAKE_REFUSED = "webhook:handshake_refused"


class SecurityRecorder:
    def __init__(self, sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._sink = sink

    def record(self, kind: SecurityEvent, request: Request, **fields: Any) -> dict[str, Any]:
        reason = str(fields.get("reason", ""))
        event = {
            "event": kind.value,
            "at": datetime.now(UTC).isoformat(),
            "peer": request.client.host if request.client else None,
            "path": request.url.path,
            "user_agent": request.headers.get("user-agent"),
            **fields,
        }
        SECURITY_EVENTS.labels(kind=kind.value, reason=reason).inc()
        log.warning(kind.value, **{k: v for k, v in event.items() if k != "event"})
        if self._sink is not None:
            self._sink(event)
        return event
