"""issue 14 #5, the pure part: refused requests from many sources stay bounded in memory
and in what is written (per window: at most MAX_SOURCES peers, then one "other")."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from archiver.security_events import MAX_SOURCES, OTHER, SecurityEvent, SecurityRecorder


def request_from(peer: str, ua: str) -> Request:
    scope = {
        "type": "http", "method": "POST", "path": "/webhooks/whatsapp", "query_string": b"",
        "headers": [(b"user-agent", ua.encode("latin-1"))], "client": (peer, 4711),
        "server": ("testserver", 80), "scheme": "http",
    }  # fmt: skip
    return Request(scope)


def test_sources_per_window_are_bounded_and_windows_close() -> None:
    out: list[dict[str, Any]] = []
    now = [1_800_000_000.5]
    rec = SecurityRecorder(out.append, window_s=60, clock=lambda: now[0])
    for i in range(MAX_SOURCES + 50):
        rec.record(SecurityEvent.SIGNATURE_REFUSED, request_from(f"10.0.{i // 256}.{i % 256}",
                   "x" * 5000), reason="mismatch", size=10)  # fmt: skip
    assert out == []  # nothing written before the window ends
    now[0] += 60  # the next refusal closes the first window
    rec.record(SecurityEvent.SIGNATURE_REFUSED, request_from("10.9.9.9", "y"), reason="missing")
    assert len(out) == MAX_SOURCES + 1
    other = [e for e in out if e["peer"] == OTHER]
    assert len(other) == 1 and other[0]["count"] == 50 and other[0]["bytes"] == 500
    assert all(len(e["user_agents"][0]["prefix"]) == 64 for e in out)
    assert rec.flush_due() == 0  # the second window is still open
    assert rec.flush_due(force=True) == 1
    assert out[-1]["peer"] == "10.9.9.9" and out[-1]["reasons"] == {"missing": 1}
