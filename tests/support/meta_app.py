"""Helpers for tests that drive the app with FakeMeta behind it: webhook bodies, media
jobs, a media worker on FakeMeta, polling (the ``fake`` fixture: tests/integration/conftest.py)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from archiver.media.worker import MediaWorker
from archiver.runtime import Runtime
from archiver.whatsapp.graph import GraphClient, RetryPolicy
from tests.fakes.meta import FakeMeta

TOKEN = "test-token"
PNID = "106540352242922"
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or probe}")


def image_webhook(
    shared: Path,
    *,
    media_id: str,
    data: bytes,
    wamid: str,
    sha_format: str = "base64",
    wa_id: str = "16505551234",
) -> bytes:
    """Meta's ``messages_image.json`` with our media id, hash and message id."""
    doc: dict[str, Any] = json.loads(
        (shared / "fixtures" / "whatsapp" / "messages_image.json").read_text()
    )
    doc = copy.deepcopy(doc)
    value = doc["entry"][0]["changes"][0]["value"]
    digest = hashlib.sha256(data).digest()
    message = value["messages"][0]
    message["id"] = wamid
    message["from"] = wa_id
    value["contacts"][0]["wa_id"] = wa_id
    message["image"]["id"] = media_id
    message["image"]["sha256"] = (
        base64.b64encode(digest).decode() if sha_format == "base64" else digest.hex()
    )
    return json.dumps(doc).encode()


def jobs(runtime: Runtime) -> dict[str, dict[str, Any]]:
    out = {}
    for key in runtime.state.list("mediajobs/"):
        value = runtime.state.get(key)
        if value is not None:
            out[key] = json.loads(value.value)
    return out


def worker_for(runtime: Runtime, fake: FakeMeta, http: httpx.Client) -> MediaWorker:
    graph = GraphClient(http, token=TOKEN, base_url=fake.base_url, retry=RetryPolicy(attempts=1))
    return MediaWorker(
        objects=runtime.objects,
        state=runtime.state,
        keys=runtime.keys,
        log_appender=runtime.log,
        pseudo=runtime.pseudo,
        graph=graph,
    )
