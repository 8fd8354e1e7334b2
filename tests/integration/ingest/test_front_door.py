"""The front door under bad and awkward input: authentic but unparseable bodies are kept
and flagged, forged ones refused, the store's outage answered 503 (so Meta retries) and
nothing authentic lost; raw captures outlive the records parsed from them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archiver.ingest.rawbatch import parse_batch
from archiver.keyspace import raw_key
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.conftest import Services, shared_dir
from tests.support.apps import backend_settings, running_app, sign


@pytest.fixture(params=["embedded", "servers"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = backend_settings(
        request, tmp_path, request.param, inline_workers=False, raw_retention_days=1
    )
    with running_app(settings) as pair:
        yield pair


def _post(client: TestClient, body: bytes, **headers: str) -> tuple[int, dict[str, object]]:
    response = client.post("/webhooks/whatsapp", content=body, headers=headers)
    return response.status_code, response.json()


def _read(runtime: Runtime, key: str) -> Record:
    version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
    return Record.parse(runtime.objects.get(key, version.version_id))


@pytest.mark.parametrize(
    "body",
    [b"not json at all", b"[1,2,3]", b'{"object":"page","entry":"x"}', b"\xff\xfe\x00binary"],
)
def test_authentic_but_unparseable_bodies_are_kept_byte_for_byte_and_flagged(
    app: tuple[TestClient, Runtime], body: bytes
) -> None:
    client, runtime = app
    status, answer = _post(
        client, body, **{"X-Hub-Signature-256": sign(body), "Content-Type": "text/plain"}
    )
    assert status == 200
    key = raw_key(str(answer["batch"]))
    outcome = runtime.processor.process(key)
    records = [_read(runtime, k) for k in outcome.record_keys]
    assert [r.header["kind"] for r in records] == ["unknown"]
    assert "unparsed" in records[0].header["flags"]
    # The raw bytes come back exactly as sent.
    version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
    batch = parse_batch(runtime.objects.get(key, version.version_id))
    capture_keys = json.loads(runtime.state.get(f"capkeys/{batch.batch_id}").value)  # type: ignore[union-attr]
    import base64

    wrapped = base64.b64decode(capture_keys["keys"]["0"])
    assert batch.open(0, runtime.kek.unwrap(wrapped)) == body


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("sha1=abc", "malformed"),
        ("abc", "malformed"),
        ("sha256=" + "0" * 64, "mismatch"),
    ],
)
def test_forged_or_unsigned_bodies_are_refused_and_not_stored(
    app: tuple[TestClient, Runtime], header: str | None, reason: str
) -> None:
    client, runtime = app
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    headers = {"X-Hub-Signature-256": header} if header else {}
    status, answer = _post(client, body, **headers)
    assert status == 401
    assert answer["error"]["details"] == {"reason": reason}  # type: ignore[index]
    assert list(runtime.objects.list_keys("raw/")) == []


def test_reserialised_body_is_refused(app: tuple[TestClient, Runtime]) -> None:
    client, _ = app
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    other = json.dumps(json.loads(body)).encode()
    status, _ = _post(client, other, **{"X-Hub-Signature-256": sign(body)})
    assert status == 401


def test_handshake(app: tuple[TestClient, Runtime]) -> None:
    client, runtime = app
    token = runtime.settings.verify_token.get_secret_value()
    ok = client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong_mode = client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "unsubscribe", "hub.verify_token": token, "hub.challenge": "1"},
    )
    assert wrong_mode.status_code == 403


def test_raw_capture_outlives_its_records(app: tuple[TestClient, Runtime]) -> None:
    client, runtime = app
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    status, answer = _post(client, body, **{"X-Hub-Signature-256": sign(body)})
    assert status == 200
    key = raw_key(str(answer["batch"]))
    version = next(v for v in runtime.objects.list_versions(key) if v.key == key).version_id
    floor = runtime.objects.stat(key, version).retention
    assert floor is not None
    outcome = runtime.processor.process(key)
    record = _read(runtime, outcome.record_keys[0])
    after = runtime.objects.stat(key, version).retention
    assert after is not None
    assert after.retain_until > floor.retain_until + timedelta(days=300)
    assert after.retain_until.isoformat()[:19] == record.header["policy"]["retain_until"][:19]
    kinds = [parse_entry(d) for d in runtime.log.entries(0, runtime.log.size())]
    assert any(e.kind is EntryKind.RETENTION_EXTENDED and e.key == key for e in kinds)


@pytest.mark.slow
def test_store_outage_answers_503_then_captures_the_retry(
    request: pytest.FixtureRequest, tmp_path: Path, services: Services
) -> None:
    settings = backend_settings(request, tmp_path, "servers", inline_workers=False)
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    with running_app(settings) as (client, runtime):
        services.stop("minio")
        try:
            status, answer = _post(client, body, **{"X-Hub-Signature-256": sign(body)})
            assert status == 503
            assert answer["error"]["code"] == "store_unavailable"  # type: ignore[index]
        finally:
            services.start("minio")
        # Meta retries the same delivery: now it is captured and recorded.
        status, answer = _post(client, body, **{"X-Hub-Signature-256": sign(body)})
        assert status == 200
        outcome = runtime.processor.process(raw_key(str(answer["batch"])))
        assert [_read(runtime, k).header["kind"] for k in outcome.record_keys] == ["message"]
