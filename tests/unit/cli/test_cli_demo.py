"""``archiver demo`` against a real uvicorn on the embedded default: the signed sample goes
through the real webhook, and the printed curl line (its fresh token) finds it (issue 13)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from archiver import cli
from archiver.api.app import create_app
from archiver.cli.demo import load_sample, render
from archiver.settings import get_settings
from tests.support.apps import APP_SECRET, VERIFY_TOKEN, embedded_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``archiver serve`` on a free port, and the CLI's environment naming the same archive."""
    data = tmp_path / "data"
    for key, value in {
        "ARCHIVER_DATA_DIR": str(data),
        "ARCHIVER_APP_SECRETS": APP_SECRET,
        "ARCHIVER_VERIFY_TOKEN": VERIFY_TOKEN,
        "ARCHIVER_LOCK_MODE": "GOVERNANCE",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(embedded_settings(data)), host="127.0.0.1", port=port,
                       log_level="warning")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        get_settings.cache_clear()


def test_demo_then_search_finds_the_conversation(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["demo", "--url", service]) == 0
    out = capsys.readouterr().out
    assert "sent 10 signed deliveries" in out
    assert "No Graph API token" in out and "not fetched" in out
    curl = re.search(r"curl -s -H 'Authorization: Bearer (\S+)' '(\S+)'", out)
    assert curl, out
    token, url = curl.groups()
    assert url == f"{service}/v1/search?q=another+color"

    def found() -> dict[str, Any] | None:
        answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body if body["hits"] else None

    deadline = time.monotonic() + 30
    while (result := found()) is None:
        assert time.monotonic() < deadline, "the demo conversation was never found"
        time.sleep(0.2)
    hit = result["hits"][0]["message"]
    assert hit["type"] == "text" and hit["direction"] == "inbound"
    assert "another color" in hit["text"]
    # The whole conversation is there: the echo, the image, the STOP, the revoked text.
    # The first hit can be indexed before the demo's later deliveries: wait for them all.
    expected = {
        ("text", "customer"),
        ("text", "business_app"),  # the Business App echo
        ("image", "customer"),
        ("edit", "customer"),
        ("reaction", "customer"),
        ("revoke", "customer"),
        ("user_preference", "customer"),  # the opt-out
        ("text", "history"),  # the history-sync chunk
    }

    def conversation() -> list[dict[str, Any]]:
        everything = httpx.get(
            f"{service}/v1/search",
            params={"conversation": hit["conversation"], "size": 100},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["hits"]
        return [h["message"] for h in everything]

    messages = conversation()
    while not {(m["type"], m["origin"]) for m in messages} >= expected:
        if time.monotonic() > deadline:
            break  # the assertion below names what is missing
        time.sleep(0.2)
        messages = conversation()
    assert {(m["type"], m["origin"]) for m in messages} >= expected
    assert any(m["type"] == "text" and m["text"] == "STOP" for m in messages)
    # No Graph API token: the conversation says the image was not fetched, and why.
    thread = httpx.get(
        f"{service}/v1/conversations/{hit['conversation']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert thread.status_code == 200, thread.text
    images = [e for e in thread.json()["events"] if e["type"] == "image"]
    assert images and images[0]["media_fetch"] == [
        {"index": 0, "status": "not_fetched", "note": "not fetched (no Graph API token)"}
    ]


def test_each_run_is_a_fresh_conversation() -> None:
    sample = load_sample()
    first = render(sample["steps"][1]["body"], 1_800_000_000, "A")
    second = render(sample["steps"][1]["body"], 1_800_000_100, "B")
    m1 = first["entry"][0]["changes"][0]["value"]["messages"][0]
    m2 = second["entry"][0]["changes"][0]["value"]["messages"][0]
    assert m1["id"] != m2["id"] and m1["timestamp"] == str(1_800_000_000 - 600)
    assert first["entry"][0]["time"] == 1_800_000_000  # Meta's entry time is a number
    assert "{{" not in str(first)


def test_media_fetch_says_not_fetched_only_without_a_token() -> None:
    from archiver.api.routes.conversations import NO_GRAPH, media_fetch

    jobs = [{"index": 0}, {"index": 1, "status": "done"}, {"index": 2, "status": "parked"}]
    assert media_fetch(jobs, graph=True) == [
        {"index": 0, "status": "pending"},
        {"index": 1, "status": "done"},
        {"index": 2, "status": "parked"},
    ]
    assert media_fetch(jobs, graph=False) == [
        {"index": 0, "status": "not_fetched", "note": NO_GRAPH},
        {"index": 1, "status": "done"},
        {"index": 2, "status": "not_fetched", "note": NO_GRAPH},
    ]
