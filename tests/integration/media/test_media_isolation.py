"""issue 14 #4: one bad media job never stops the others; bad media ids are refused at the
edge. Real app (embedded backends) and FakeMeta on a real loopback socket.

Before: a failed proxy send with ``image.id: "x/y"`` left a media job; the Graph client's
``_segment`` raised ValueError, the worker caught only GraphError, so every ``run_once``
aborted on that job and six inbound image jobs stayed at 0 attempts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.auth import Role
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.fakes.meta import FakeMeta
from tests.support.apps import embedded_settings, running_app, sign
from tests.support.meta_app import (
    PNID,
    TOKEN,
    image_webhook,
    jobs,
    wait_for,
    worker_for,
)

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[tuple[Any, Runtime]]:
    """No Graph token: the processor makes jobs, no media loop runs (the test drives it)."""
    with running_app(embedded_settings(tmp_path / "data")) as pair:
        assert pair[1].media is None
        yield pair


def post(client: Any, body: bytes) -> None:
    r = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text


def job_of(runtime: Runtime, media_id: str) -> tuple[str, dict[str, Any]]:
    found = wait_for(
        lambda: [(k, j) for k, j in jobs(runtime).items() if j["media_id"] == media_id],
        what=f"the job of {media_id}",
    )
    return found[0]


def test_bad_jobs_are_set_aside_and_every_good_job_is_archived(
    quiet: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet
    good = [f"10{n}" for n in range(6)]
    for n, media_id in enumerate(good):
        data = JPEG + bytes([n])
        fake.add_media(media_id, data, "image/jpeg")
        post(client, image_webhook(shared, media_id=media_id, data=data, wamid=f"wamid.G{n}"))
    # A webhook whose media id is not Meta's: captured, its record written, its job marked.
    post(client, image_webhook(shared, media_id="x/y", data=JPEG, wamid="wamid.BAD"))
    bad_key, bad = job_of(runtime, "x/y")
    assert bad["problem"] == "media_id_invalid"
    for media_id in good:
        job_of(runtime, media_id)

    # Jobs as older code left them, sorted before every real job (record ids are r_<a-z2-7>):
    # the "x/y" id without the processor's mark, and a job that fails for a reason of its
    # own (an unreadable first_seen).
    legacy = {k: v for k, v in bad.items() if k != "problem"}
    runtime.state.put("mediajobs/r_0legacy/0", json.dumps(legacy).encode())
    _, template = job_of(runtime, good[0])
    broken = {**template, "media_id": "999", "first_seen": "not a date"}
    runtime.state.put("mediajobs/r_0broken/0", json.dumps(broken).encode())

    with httpx.Client(timeout=5) as http:
        worker = worker_for(runtime, fake, http)
        report = worker.run_once()
        assert (report.stored, report.flagged, report.parked) == (6, 2, 1), report
        after = jobs(runtime)
        # Every good job is archived.
        for media_id in good:
            key, job = next((k, j) for k, j in after.items() if j["media_id"] == media_id)
            assert job["status"] == "done", (key, job)
            assert (
                job["sha256_verified"]
                == hashlib.sha256(JPEG + bytes([good.index(media_id)])).hexdigest()
            )
        # Bad ids are never fetched: the message is flagged media_missing, with the reason.
        for key in (bad_key, "mediajobs/r_0legacy/0"):
            assert after[key]["status"] == "missing", after[key]
            assert after[key]["last_error"] == "media_id_invalid"
        asked = {r.path.split("/")[2] for r in fake.requests if r.path.startswith("/v23.0/")}
        assert asked == set(good)  # media info was asked for the good ids only
        missing_id = runtime.pseudo.record_id(bad["record_id"], "media_missing", "0")
        key = f"records/{missing_id[2:4]}/{missing_id}"
        version = next(iter(runtime.objects.list_versions(key))).version_id
        record = Record.parse(runtime.objects.get(key, version))
        assert record.header["flags"] == ["media_missing"]
        assert record.header["missing"]["reason"] == "media_id_invalid"
        # The job that failed on its own is parked with its reason, visible in its document.
        parked = after["mediajobs/r_0broken/0"]
        assert parked["status"] == "parked" and parked["parked_reason"] == "ValueError"
        assert parked["parked_from"] == "pending" and parked["claim_owner"] is None
        # Parked stays parked: a later run neither retries it nor stops on it.
        again = worker.run_once()
        assert (again.stored, again.flagged, again.parked) == (0, 0, 0)
        assert jobs(runtime)["mediajobs/r_0broken/0"] == parked
    metrics = client.get("/metrics").text
    assert 'archiver_media_jobs_parked_total{reason="ValueError"}' in metrics
    assert 'archiver_media_jobs_refused_total{reason="media_id_invalid"}' in metrics


def test_send_proxy_refuses_a_media_id_that_is_not_metas(tmp_path: Path, fake: FakeMeta) -> None:
    settings = embedded_settings(tmp_path / "data", graph_token=TOKEN, graph_base_url=fake.base_url)
    with running_app(settings) as (client, runtime):
        plain, _ = runtime.tokens.create(role=Role.SERVICE, name="crm")
        auth = {"Authorization": f"Bearer {plain}"}
        before = list(runtime.objects.list_keys("raw/"))
        for media_id in ("x/y", "../../me", "123?fields=x", 42, ""):
            payload = {"messaging_product": "whatsapp", "to": "16505551234", "type": "image",
                       "image": {"id": media_id, "caption": "statement"}}  # fmt: skip
            r = client.post(
                "/v1/messages", json={"phone_number_id": PNID, "payload": payload}, headers=auth
            )
            assert r.status_code == 400, (media_id, r.text)
            assert r.json()["error"]["code"] == "media_id_invalid"
        # Nothing was sent, captured or queued.
        assert [r for r in fake.requests if r.path.endswith("/messages")] == []
        assert list(runtime.objects.list_keys("raw/")) == before
        assert jobs(runtime) == {}
        # A digits id (and a link send) still go through.
        ok = {"messaging_product": "whatsapp", "to": "16505551234", "type": "image",
              "image": {"id": "1234567890", "caption": "statement"}}  # fmt: skip
        r = client.post("/v1/messages", json={"phone_number_id": PNID, "payload": ok}, headers=auth)
        assert r.status_code == 200, r.text
