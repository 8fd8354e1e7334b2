"""Media capture end to end: webhook → processor job → Graph (FakeMeta) → encrypted blob,
link record, log leaves. Embedded backends, real sockets to FakeMeta."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.keys.envelope import decrypt
from archiver.keyspace import media_object_key
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.fakes.meta import FakeMeta
from tests.support.apps import embedded_settings, running_app, sign
from tests.support.meta_app import (
    TOKEN,
    image_webhook,
    jobs,
    wait_for,
    worker_for,
)

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 30 + b"\xff\xd9"


def log_entries(runtime: Runtime) -> list[Any]:
    size = runtime.log.size()
    return [parse_entry(d) for d in runtime.log.entries(0, size)] if size else []


def post(client: Any, body: bytes) -> None:
    answer = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def assert_stored(runtime: Runtime, job: dict[str, Any], data: bytes) -> Record:
    """The blob is encrypted under the subject's key, the link record names it, both logged."""
    sha = hashlib.sha256(data).hexdigest()
    assert job["status"] == "done", job
    key = media_object_key(job["subject"], sha)
    versions = [v for v in runtime.objects.list_versions(key) if v.key == key]
    assert len(versions) == 1
    stored = runtime.objects.get(key, versions[0].version_id)
    assert data not in stored and stored != data  # encrypted at rest
    data_key = runtime.keys.get(job["key_id"])
    assert decrypt(data_key, stored, aad=key.encode()) == data
    info = runtime.objects.stat(key, versions[0].version_id)
    assert info.retention is not None
    wanted = datetime.fromisoformat(job["retain_until"])
    assert abs(info.retention.retain_until - wanted) < timedelta(seconds=1)  # S3 keeps ms
    link_id = runtime.pseudo.record_id(job["record_id"], "media", str(job["index"]))
    link_key = f"records/{link_id[2:4]}/{link_id}"
    link_version = next(iter(runtime.objects.list_versions(link_key))).version_id
    link = Record.parse(runtime.objects.get(link_key, link_version))
    assert link.header["kind"] == "media_link"
    assert link.header["link_of"] == job["record_id"]
    media = link.header["media"]
    assert media["sha256"] == sha and media["size"] == len(data)
    assert media["key"] == key and media["version_id"] == versions[0].version_id
    assert media["mime_type"] == "image/jpeg"
    entries = log_entries(runtime)
    media_leaves = [e for e in entries if e.kind is EntryKind.MEDIA and e.key == key]
    assert len(media_leaves) == 1
    assert media_leaves[0].fields["plaintext_sha256"] == sha
    assert media_leaves[0].fields["sha256"] == hashlib.sha256(stored).hexdigest()
    assert [e for e in entries if e.kind is EntryKind.RECORD and e.key == link_key]
    return link


@pytest.mark.parametrize(("webhook_sha", "meta_sha"), [("base64", "hex"), ("hex", "base64")])
def test_media_message_through_the_app(
    tmp_path: Path, shared: Path, fake: FakeMeta, webhook_sha: str, meta_sha: str
) -> None:
    fake.add_media("100100", JPEG, "image/jpeg", sha256_format=meta_sha, file_size_as="int")  # type: ignore[arg-type]
    settings = embedded_settings(tmp_path / "data", graph_token=TOKEN, graph_base_url=fake.base_url)
    with running_app(settings) as (client, runtime):
        assert runtime.media is not None
        post(
            client,
            image_webhook(
                shared, media_id="100100", data=JPEG, wamid="wamid.M100", sha_format=webhook_sha
            ),
        )
        done = wait_for(
            lambda: [j for j in jobs(runtime).values() if j.get("status") == "done"],
            what="the media job to finish",
        )
        assert_stored(runtime, done[0], JPEG)
        auth = [r.headers.get("Authorization") for r in fake.requests]
        assert auth and all(a == f"Bearer {TOKEN}" for a in auth)


@pytest.fixture
def quiet_app(tmp_path: Path) -> Iterator[tuple[Any, Runtime]]:
    """The app without a Graph token: jobs are made, no media loop runs (we drive it)."""
    with running_app(embedded_settings(tmp_path / "data")) as pair:
        assert pair[1].media is None
        yield pair


def make_job(
    client: Any,
    runtime: Runtime,
    shared: Path,
    media_id: str,
    data: bytes,
    wamid: str,
    wa_id: str = "16505551234",
) -> tuple[str, dict[str, Any]]:
    post(client, image_webhook(shared, media_id=media_id, data=data, wamid=wamid, wa_id=wa_id))
    found = wait_for(
        lambda: [(k, j) for k, j in jobs(runtime).items() if j["media_id"] == media_id],
        what="the processor's media job",
    )
    return found[0]


def test_expired_url_fetches_a_fresh_one(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet_app
    fake.add_media("100200", JPEG, "image/jpeg")
    fake.expire_url("100200", 1)
    key, _ = make_job(client, runtime, shared, "100200", JPEG, "wamid.M200")
    with httpx.Client(timeout=5) as http:
        report = worker_for(runtime, fake, http).run_once()
    assert report.stored == 1
    assert_stored(runtime, jobs(runtime)[key], JPEG)
    info_calls = [r for r in fake.requests if r.path.endswith("/100200")]
    downloads = [r for r in fake.requests if r.path.startswith("/_media/100200/")]
    assert len(info_calls) == 2 and len(downloads) == 2
    assert downloads[0].path != downloads[1].path  # a fresh URL, not the same one again


def test_hash_mismatch_is_retried_then_flagged(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet_app
    fake.add_media("100300", JPEG, "image/jpeg")
    fake.corrupt_media("100300")
    key, job = make_job(client, runtime, shared, "100300", JPEG, "wamid.M300")
    first_seen = datetime.fromisoformat(job["first_seen"])
    with httpx.Client(timeout=5) as http:
        worker = worker_for(runtime, fake, http)
        report = worker.run_once(first_seen + timedelta(seconds=1))
        assert report.retried == 1 and report.stored == 0
        after = jobs(runtime)[key]
        assert after["status"] == "pending" and after["attempts"] == 1
        assert after["last_error"] == "media_hash_mismatch"
        assert datetime.fromisoformat(after["next_retry_at"]) > first_seen
        assert list(runtime.objects.list_keys("media/")) == []  # never stored unverified
        # Not due yet: nothing happens.
        assert worker.run_once(first_seen + timedelta(seconds=2)).retried == 0
        report = worker.run_once(first_seen + timedelta(days=7, seconds=1))
    assert report.flagged == 1
    final = jobs(runtime)[key]
    assert final["status"] == "missing"
    missing_id = runtime.pseudo.record_id(job["record_id"], "media_missing", "0")
    entries = [e for e in log_entries(runtime) if e.fields.get("record_id") == missing_id]
    assert len(entries) == 1 and entries[0].fields["event"] == "media_missing"
    record = Record.parse(runtime.objects.get(entries[0].key, entries[0].version_id))
    assert record.header["link_of"] == job["record_id"]
    assert record.header["flags"] == ["media_missing"]
    assert list(runtime.objects.list_keys("media/")) == []


def test_gone_media_past_seven_days_is_flagged_at_once(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet_app
    key, job = make_job(client, runtime, shared, "100400", JPEG, "wamid.M400")  # unknown to Meta
    first_seen = datetime.fromisoformat(job["first_seen"])
    with httpx.Client(timeout=5) as http:
        report = worker_for(runtime, fake, http).run_once(first_seen + timedelta(days=8))
    assert report.flagged == 1
    assert jobs(runtime)[key]["status"] == "missing"
    assert jobs(runtime)[key]["last_error"] == "media_expired"


def test_same_media_same_subject_shares_one_blob_and_crash_after_blob_completes(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet_app
    fake.add_media("100500", JPEG, "image/jpeg")
    fake.add_media("100501", JPEG, "image/jpeg")
    key1, job1 = make_job(client, runtime, shared, "100500", JPEG, "wamid.M500")
    # Simulate a crash after the blob was written and before the link: put the blob now.
    from archiver.keys.envelope import encrypt
    from archiver.store.port import LockMode, Retention

    sha = hashlib.sha256(JPEG).hexdigest()
    blob_key = media_object_key(job1["subject"], sha)
    runtime.objects.put(
        blob_key,
        encrypt(runtime.keys.get(job1["key_id"]), JPEG, aad=blob_key.encode()),
        retention=Retention(
            LockMode(job1["lock_mode"]), datetime.fromisoformat(job1["retain_until"])
        ),
    )
    with httpx.Client(timeout=5) as http:
        worker = worker_for(runtime, fake, http)
        report = worker.run_once()
        assert report.reused == 1 and report.stored == 0
        assert_stored(runtime, jobs(runtime)[key1], JPEG)  # blob logged once, link written
        key2, _ = make_job(client, runtime, shared, "100501", JPEG, "wamid.M501")
        assert worker.run_once().reused == 1
    assert_stored(runtime, jobs(runtime)[key2], JPEG)  # still one MEDIA leaf for the blob
    assert len(list(runtime.objects.list_keys("media/"))) == 1


def test_different_subjects_never_share_a_blob(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    client, runtime = quiet_app
    fake.add_media("100600", JPEG, "image/jpeg")
    fake.add_media("100601", JPEG, "image/jpeg")
    _key_a, job_a = make_job(client, runtime, shared, "100600", JPEG, "wamid.M600")
    _key_b, job_b = make_job(
        client, runtime, shared, "100601", JPEG, "wamid.M601", wa_id="16505559999"
    )
    assert job_a["subject"] != job_b["subject"]
    with httpx.Client(timeout=5) as http:
        report = worker_for(runtime, fake, http).run_once()
    assert report.stored == 2
    keys = sorted(runtime.objects.list_keys("media/"))
    assert len(keys) == 2 and {k.split("/")[1] for k in keys} == {
        job_a["subject"],
        job_b["subject"],
    }
    json.dumps(report.__dict__)


def test_media_against_real_minio(
    tmp_path: Path, shared: Path, fake: FakeMeta, s3_endpoint: dict[str, str]
) -> None:
    import secrets

    suffix = secrets.token_hex(4)
    settings = embedded_settings(
        tmp_path / "data",
        store="s3",
        s3_endpoint=s3_endpoint["endpoint"],
        s3_access_key=s3_endpoint["access_key"],
        s3_secret_key=s3_endpoint["secret_key"],
        evidence_bucket=f"cap2-ev-{suffix}",
        state_bucket=f"cap2-st-{suffix}",
        graph_token=TOKEN,
        graph_base_url=fake.base_url,
    )
    fake.add_media("100900", JPEG, "image/jpeg", sha256_format="base64")
    fake.expire_url("100900", 1)
    with running_app(settings) as (client, runtime):
        post(client, image_webhook(shared, media_id="100900", data=JPEG, wamid="wamid.M900"))
        done = wait_for(
            lambda: [j for j in jobs(runtime).values() if j.get("status") == "done"],
            timeout=60,
            what="the media job on MinIO",
        )
        assert_stored(runtime, done[0], JPEG)


def test_job_without_a_key_id_logs_the_key_it_creates_once(
    quiet_app: tuple[Any, Runtime], shared: Path, fake: FakeMeta
) -> None:
    """A job queued without its record's key (an older version's job) for a subject that
    has no key yet: the worker creates the key, and its creation is a leaf exactly once."""
    client, runtime = quiet_app
    fake.add_media("7002", JPEG, "image/jpeg")
    key, job = make_job(client, runtime, shared, "7002", JPEG, "wamid.MKEY")
    subject = runtime.pseudo.token("s_", "subject", "no-key-yet")
    legacy = {k: v for k, v in job.items() if k != "key_id"}
    legacy["subject"] = subject
    current = runtime.state.get(key)
    assert current is not None
    runtime.state.put(key, json.dumps(legacy).encode(), if_match=current.token)

    with httpx.Client(timeout=5) as http:
        worker_for(runtime, fake, http).run_once()
    done = jobs(runtime)[key]
    assert done["status"] == "done", done
    created = [
        e
        for e in log_entries(runtime)
        if e.kind is EntryKind.KEY_CREATED and e.fields.get("subject") == subject
    ]
    assert len(created) == 1
    subject_key, again = runtime.keys.get_or_create(subject)
    assert again is None and created[0].fields["key_id"] == subject_key.key_id
    stored_key = media_object_key(subject, hashlib.sha256(JPEG).hexdigest())
    version = next(iter(runtime.objects.list_versions(stored_key))).version_id
    blob = runtime.objects.get(stored_key, version)
    assert decrypt(subject_key, blob, aad=stored_key.encode()) == JPEG
