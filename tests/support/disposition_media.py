"""Helpers for the issue-15 disposition tests: an archive (embedded store or real MinIO)
with FakeMeta behind the media worker, image messages with chosen times, policies, time
travel on the embedded store, and the facts a test asserts on."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from archiver.keyspace import record_key
from archiver.ledger.entry import EntryKind
from archiver.media.worker import MediaWorker
from archiver.records.model import Record
from archiver.retention.disposition import DispositionJob
from archiver.runtime import Runtime
from archiver.whatsapp.graph import GraphClient, RetryPolicy
from tests.fakes.meta import FakeMeta
from tests.support.apps import sign
from tests.support.retention import (
    SHORT_DEFAULT,
    app_on,
    log_entries,
    s3_overrides,
)

TOKEN = "test-graph-token"
PNID = "106540352242922"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"

REVIEW_TWO = SHORT_DEFAULT.replace(
    "  action: delete\n  two_person_approval: false",
    "  action: review\n  two_person_approval: true",
)
assert REVIEW_TWO != SHORT_DEFAULT


def longer_default(days: int, *, review: bool = False) -> str:
    """The short default with a longer period (an operator lengthening the policy)."""
    text = (REVIEW_TWO if review else SHORT_DEFAULT).replace("period: P0D", f"period: P{days}D")
    assert f"P{days}D" in text
    return text


def write_policy(tmp: Path, text: str, name: str = "policies") -> Path:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    (folder / "default.yaml").write_text(text)
    return folder


def base_overrides(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    """Settings of one archive on ``backend``; reuse them to reopen the same archive."""
    if backend == "minio":
        return s3_overrides(request.getfixturevalue("s3_endpoint"))
    return {"inline_workers": False, "raw_retention_days": 2200}


@contextmanager
def archive_with(
    tmp: Path, base: dict[str, Any], policy_dir: Path
) -> Iterator[tuple[TestClient, Runtime]]:
    with app_on(tmp, **base, policy_dir=policy_dir) as pair:
        yield pair


def image_body(shared: Path, *, wa_id: str, media_id: str, data: bytes, ts: int) -> bytes:
    """Meta's ``messages_image.json`` from ``wa_id`` at ``ts`` with a base64 ``sha256``
    (as Meta sends it)."""
    doc: dict[str, Any] = copy.deepcopy(
        json.loads((shared / "fixtures" / "whatsapp" / "messages_image.json").read_text())
    )
    value = doc["entry"][0]["changes"][0]["value"]
    message = value["messages"][0]
    message["id"] = "wamid.I" + secrets.token_hex(12)
    message["from"] = wa_id
    message["timestamp"] = str(ts)
    value["contacts"][0]["wa_id"] = wa_id
    message["image"]["id"] = media_id
    message["image"]["sha256"] = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return json.dumps(doc).encode()


def post(client: TestClient, rt: Runtime, body: bytes) -> None:
    r = client.post("/webhooks/whatsapp", content=body,
                    headers={"X-Hub-Signature-256": sign(body),
                             "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    outcomes = rt.processor.sweep()
    assert all(o.status in ("done", "skipped") for o in outcomes), outcomes
    rt.follower.catch_up()


def media_worker(rt: Runtime, fake: FakeMeta, http: httpx.Client) -> MediaWorker:
    graph = GraphClient(http, token=TOKEN, base_url=fake.base_url,
                        retry=RetryPolicy(attempts=1))
    return MediaWorker(objects=rt.objects, state=rt.state, keys=rt.keys,
                       log_appender=rt.log, pseudo=rt.pseudo, graph=graph)


@dataclass(frozen=True)
class Attached:
    """One image message as stored: the message, its link record and its blob."""

    message: tuple[str, str]
    message_id: str
    link: tuple[str, str]
    blob: tuple[str, str]


def deliver_image(
    client: TestClient, rt: Runtime, worker: MediaWorker, fake: FakeMeta, shared: Path,
    *, wa_id: str, ts: int,
) -> Attached:
    """An image message through webhook, processor and media worker (FakeMeta)."""
    media_id = str(secrets.randbelow(10**15) + 10**15)  # Meta media ids are digits
    data = JPEG + secrets.token_bytes(8)  # a blob of its own per message
    fake.add_media(media_id, data, "image/jpeg")
    before = {e.key for e in log_entries(rt) if e.kind is EntryKind.RECORD}
    post(client, rt, image_body(shared, wa_id=wa_id, media_id=media_id, data=data, ts=ts))
    report = worker.run_once()
    assert report.stored == 1, report
    rt.follower.catch_up()
    link_leaf = next(e for e in log_entries(rt) if e.kind is EntryKind.RECORD
                     and e.fields.get("event") == "media_link" and e.key not in before)
    assert link_leaf.key and link_leaf.version_id
    link = Record.parse(rt.objects.get(link_leaf.key, link_leaf.version_id))
    message_id = str(link.header["link_of"])
    mkey = record_key(message_id)
    (mversion,) = [v.version_id for v in rt.objects.list_versions(mkey) if v.key == mkey]
    media = link.header["media"]
    return Attached((mkey, mversion), message_id, (link_leaf.key, link_leaf.version_id),
                    (str(media["key"]), str(media["version_id"])))


def present(rt: Runtime, ref: tuple[str, str]) -> bool:
    return any(v.version_id == ref[1] and not v.is_delete_marker
               for v in rt.objects.list_versions(ref[0]) if v.key == ref[0])


def disposed_refs(rt: Runtime) -> set[tuple[str | None, str | None]]:
    return {(e.key, e.version_id) for e in log_entries(rt) if e.kind is EntryKind.DISPOSED}


def travel(rt: Runtime, job: DispositionJob, days: float) -> datetime:
    """Move the embedded store's clock and the job's clock ``days`` ahead."""
    later = datetime.now(UTC) + timedelta(days=days)
    rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
    job.clock = lambda: later
    return later


def pass_expiry(rt: Runtime, backend: str, until: int) -> DispositionJob:
    """The runtime's disposition job, with the clock past ``until`` (epoch seconds): time
    travel on the embedded store, a real wait on MinIO."""
    job = rt.retention.disposition
    if backend == "minio":
        time.sleep(max(0.0, until - time.time()) + 1.5)
    else:
        travel(rt, job, days=2)
    return job


def soon(backend: str) -> int:
    """A message time whose P0D lock passes quickly (MinIO needs a future date)."""
    return int(time.time()) + (15 if backend == "minio" else 3)
