"""A sender that goes away before its webhook body arrived whole is not an error of the
archive's: the request ends quietly (nothing captured, nothing logged as an error). Left to
the catch-all it raised out of the application, and uvicorn wrote a full traceback at
error level for each one: a stranger could fill the log at will, one dropped connection
at a time (the refusals of strangers are otherwise aggregated: archiver.security_events)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient
from starlette.types import Message

from archiver.runtime import Runtime


def _dropped(app: Any, path: str) -> list[Message]:
    """Run one request whose sender disconnects after the first chunk of its body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000"),
                    (b"x-hub-signature-256", b"sha256=" + b"0" * 64)],
        "client": ("203.0.113.9", 4711), "server": ("testserver", 80), "scheme": "http",
    }  # fmt: skip
    incoming: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # raised ClientDisconnect out of the app before
    return sent


def test_a_sender_gone_mid_body_ends_the_request_quietly(
    app_client: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app_client
    before = runtime.log.size()
    sent = _dropped(client.app, "/webhooks/whatsapp")
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [400]
    assert runtime.log.size() == before
    # The service goes on: a whole delivery is still answered.
    assert client.get("/healthz").status_code == 200
