"""GraphClient against the FakeMeta HTTP server over loopback (real sockets, real httpx)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from archiver.whatsapp.graph import (
    GraphAuthError,
    GraphClient,
    GraphNotFound,
    GraphRequestError,
    GraphUnavailable,
    MediaExpired,
    MediaHashMismatch,
    MediaTooLarge,
    RetryPolicy,
)
from tests.fakes.meta import FakeMeta

pytestmark = pytest.mark.integration

TOKEN = "test-token"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    fake: FakeMeta, sleeps: list[float], *, token: str = TOKEN, attempts: int = 4
) -> Iterator[GraphClient]:
    with httpx.Client(timeout=5.0) as http:
        yield GraphClient(
            http,
            token=token,
            base_url=fake.base_url,
            version="v23.0",
            retry=RetryPolicy(attempts=attempts, sleep=sleeps.append),
        )


@pytest.fixture
def client(fake: FakeMeta, sleeps: list[float]) -> Iterator[GraphClient]:
    yield from make_client(fake, sleeps)


def paths(fake: FakeMeta) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.requests]


# ---------------------------------------------------------------------------- media


@pytest.mark.parametrize(
    ("sha256_format", "file_size_as", "expected_size"),
    [("hex", "str", len(JPEG)), ("base64", "int", len(JPEG)), ("base64", "absent", None)],
)
def test_download_accepts_hex_and_base64_and_both_file_size_types(
    fake: FakeMeta,
    client: GraphClient,
    sha256_format: str,
    file_size_as: str,
    expected_size: int | None,
) -> None:
    fake.add_media(
        "111", JPEG, "image/jpeg", sha256_format=sha256_format, file_size_as=file_size_as
    )  # type: ignore[arg-type]

    info = client.get_media_url("111")
    assert info.sha256_hex == hashlib.sha256(JPEG).hexdigest()
    assert info.file_size == expected_size
    assert info.mime_type == "image/jpeg"
    assert info.id == "111"

    blob = client.download_media("111")
    assert blob.data == JPEG
    assert blob.size == len(JPEG)
    assert blob.sha256_hex == hashlib.sha256(JPEG).hexdigest()
    assert blob.mime_type == "image/jpeg"
    # Meta: the download needs the same bearer header as the API call.
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in fake.requests)


def test_phone_number_id_is_passed_as_query(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("112", b"abc", "text/plain")
    client.get_media_url("112", phone_number_id="106540352242922")
    assert fake.requests[-1].query == {"phone_number_id": ["106540352242922"]}


def test_expired_url_fetches_a_fresh_url_once(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("113", JPEG, "image/jpeg")
    fake.expire_url("113", times=1)

    blob = client.download_media("113")

    assert blob.data == JPEG
    assert paths(fake) == [
        "GET /v23.0/113",
        f"GET {fake.requests[1].path}",
        "GET /v23.0/113",
        f"GET {fake.requests[3].path}",
    ]
    assert fake.requests[1].path != fake.requests[3].path  # a fresh URL, not the same one


def test_expired_url_twice_is_not_found(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("114", JPEG, "image/jpeg")
    fake.expire_url("114", times=2)

    with pytest.raises(GraphNotFound) as caught:
        client.download_media("114")

    assert not isinstance(caught.value, MediaExpired)
    assert caught.value.http_status == 404
    assert len(fake.requests) == 4  # info, 404, fresh info, 404 — no tenacity retry


def test_unknown_media_id_is_graph_not_found(fake: FakeMeta, client: GraphClient) -> None:
    with pytest.raises(GraphNotFound) as caught:
        client.get_media_url("999")
    assert caught.value.http_status == 400
    assert caught.value.meta_code == 100
    assert caught.value.meta_error is not None
    assert caught.value.meta_error["error_subcode"] == 33


def test_not_found_past_seven_days_is_media_expired(fake: FakeMeta, client: GraphClient) -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    with pytest.raises(MediaExpired):
        client.download_media("998", first_seen=now - timedelta(days=7, seconds=1), now=now)
    with pytest.raises(GraphNotFound) as caught:
        client.download_media("998", first_seen=now - timedelta(days=6), now=now)
    assert not isinstance(caught.value, MediaExpired)


def test_hash_mismatch_is_refused(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("115", JPEG, "image/jpeg", sha256_format="base64")
    fake.corrupt_media("115")

    with pytest.raises(MediaHashMismatch) as caught:
        client.download_media("115")

    assert caught.value.details["expected"] == hashlib.sha256(JPEG).hexdigest()
    assert caught.value.details["actual"] != caught.value.details["expected"]


def test_webhook_sha256_must_agree_with_metas(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("116", JPEG, "image/jpeg")
    webhook_b64 = base64.b64encode(hashlib.sha256(JPEG).digest()).decode()
    assert client.download_media("116", expected_sha256=webhook_b64).data == JPEG

    fake.clear_requests()
    with pytest.raises(MediaHashMismatch):
        client.download_media("116", expected_sha256=hashlib.sha256(b"other").hexdigest())
    assert len(fake.requests) == 1  # refused before downloading


def test_wrong_token_is_auth_error(fake: FakeMeta, sleeps: list[float]) -> None:
    fake.add_media("117", JPEG, "image/jpeg")
    for client in make_client(fake, sleeps, token="wrong"):
        with pytest.raises(GraphAuthError) as caught:
            client.download_media("117")
        assert caught.value.http_status == 401
        assert caught.value.meta_code == 190
        assert caught.value.meta_error is not None
        assert caught.value.meta_error["type"] == "OAuthException"
        assert "fbtrace_id" in caught.value.meta_error
    assert sleeps == []  # auth errors are not retried


def test_missing_token_gets_metas_error_shape(fake: FakeMeta) -> None:
    fake.add_media("118", JPEG, "image/jpeg")
    answer = httpx.get(f"{fake.base_url}/v23.0/118")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= error.keys()
    assert error["code"] == 190


def test_server_errors_are_retried_then_succeed(
    fake: FakeMeta, client: GraphClient, sleeps: list[float]
) -> None:
    fake.add_media("119", JPEG, "image/jpeg")
    fake.fail_next(1, 500)
    fake.fail_next(1, 429)

    assert client.download_media("119").data == JPEG
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5  # 0.5·2^(n-1) + jitter


def test_download_url_500_is_retried(
    fake: FakeMeta, client: GraphClient, sleeps: list[float]
) -> None:
    fake.add_media("120", JPEG, "image/jpeg")
    fake.fail_next(1, 503, only="/_media/")

    assert client.download_media("120").data == JPEG
    assert len(sleeps) == 1


def test_server_errors_give_up_after_the_policy(
    fake: FakeMeta, client: GraphClient, sleeps: list[float]
) -> None:
    fake.add_media("121", JPEG, "image/jpeg")
    fake.fail_next(100, 500)

    with pytest.raises(GraphUnavailable) as caught:
        client.get_media_url("121")

    assert caught.value.http_status == 500
    assert len(fake.requests) == 4
    assert len(sleeps) == 3


def test_declared_file_size_over_limit_is_refused_before_download(
    fake: FakeMeta, client: GraphClient
) -> None:
    fake.add_media("122", JPEG, "image/jpeg", file_size_as="int")
    with pytest.raises(MediaTooLarge):
        client.download_media("122", max_bytes=len(JPEG) - 1)
    assert len(fake.requests) == 1


def test_streamed_size_over_limit_is_refused(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_media("123", JPEG, "image/jpeg", file_size_as="absent")
    with pytest.raises(MediaTooLarge):
        client.download_media("123", max_bytes=100)
    assert client.download_media("123", max_bytes=len(JPEG)).size == len(JPEG)


# ---------------------------------------------------------------------------- send proxy


def test_send_message_success(fake: FakeMeta, client: GraphClient) -> None:
    raw = (
        b'{"messaging_product":"whatsapp","to":"+16505551234",'
        b'"type":"text","text":{"body":"Hi \xc3\xa9"}}'
    )

    result = client.send_message("106540352242922", raw)

    assert result.status_code == 200
    assert result.ok and result.error is None
    assert len(result.wamids) == 1 and result.wamids[0].startswith("wamid.")
    assert result.contacts == [{"input": "+16505551234", "wa_id": "16505551234"}]
    assert result.body["messaging_product"] == "whatsapp"
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v23.0/106540352242922/messages")
    assert sent.body == raw  # forwarded byte for byte
    assert sent.headers["Content-Type"] == "application/json"


def test_send_message_to_business_scoped_user_id(fake: FakeMeta, client: GraphClient) -> None:
    payload = {"messaging_product": "whatsapp", "recipient": "US.13491208655302741918"}
    result = client.send_message("106540352242922", payload)
    assert result.contacts == [
        {"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}
    ]
    assert fake.requests[-1].json() == payload


def test_send_message_meta_error_is_a_result(
    fake: FakeMeta, client: GraphClient, sleeps: list[float]
) -> None:
    fake.queue_send_error(400)

    result = client.send_message("1065", {"messaging_product": "whatsapp", "to": "1555"})

    assert result.status_code == 400
    assert not result.ok
    assert result.wamids == [] and result.contacts == []
    assert result.error is not None
    assert result.error["code"] == 131030
    assert result.error["error_data"]["messaging_product"] == "whatsapp"
    assert b"131030" in result.raw_body
    assert sleeps == []


def test_send_message_with_bad_token_is_a_result(fake: FakeMeta, sleeps: list[float]) -> None:
    for client in make_client(fake, sleeps, token="wrong"):
        result = client.send_message("1065", {"messaging_product": "whatsapp", "to": "1555"})
        assert result.status_code == 401
        assert result.error is not None and result.error["code"] == 190


def test_send_message_is_never_retried(fake: FakeMeta, client: GraphClient) -> None:
    fake.fail_next(1, 500)
    result = client.send_message("1065", {"messaging_product": "whatsapp", "to": "1555"})
    assert result.status_code == 500 and not result.ok
    assert len(fake.requests) == 1


# ---------------------------------------------------------------------------- coexistence


def test_smb_app_data_once_per_sync_type(fake: FakeMeta, client: GraphClient) -> None:
    contacts_id = client.request_smb_app_data("106540352242922", "smb_app_state_sync")
    history_id = client.request_smb_app_data("106540352242922", "history")
    assert contacts_id and history_id and contacts_id != history_id
    assert fake.requests[0].json() == {
        "messaging_product": "whatsapp",
        "sync_type": "smb_app_state_sync",
    }
    assert fake.requests[0].path == "/v23.0/106540352242922/smb_app_data"

    with pytest.raises(GraphRequestError) as caught:
        client.request_smb_app_data("106540352242922", "history")
    assert caught.value.http_status == 400
    assert caught.value.meta_code == 100


def test_phone_number_platform(fake: FakeMeta, client: GraphClient) -> None:
    fake.add_phone_number("106540352242922", is_on_biz_app=True, platform_type="CLOUD_API")
    on_app, platform = client.get_phone_number_platform("106540352242922")
    assert (on_app, platform) == (True, "CLOUD_API")
    assert fake.requests[-1].query == {"fields": ["is_on_biz_app,platform_type"]}


# ---------------------------------------------------------------------------- network down


def test_server_down_is_graph_unavailable(sleeps: list[float]) -> None:
    fake = FakeMeta(token=TOKEN).start()
    fake.add_media("124", JPEG, "image/jpeg")
    fake.stop()  # the port is closed now: connection refused
    for client in make_client(fake, sleeps, attempts=2):
        with pytest.raises(GraphUnavailable):
            client.download_media("124")
        assert len(sleeps) == 1
        with pytest.raises(GraphUnavailable):
            client.send_message("1065", {"messaging_product": "whatsapp", "to": "1555"})
        with pytest.raises(GraphUnavailable):
            client.request_smb_app_data("1065", "history")
    assert len(sleeps) == 1  # POSTs are not retried


# ---------------------------------------------------------------------------- standalone


def test_fake_runs_as_a_standalone_process(sleeps: list[float]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.meta", "--port", "0", "--token", TOKEN],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        put = httpx.put(
            f"{base_url}/_fake/media/125", content=JPEG, headers={"Content-Type": "image/png"}
        )
        assert put.status_code == 201
        with httpx.Client(timeout=5.0) as http:
            client = GraphClient(
                http, token=TOKEN, base_url=base_url, retry=RetryPolicy(attempts=1)
            )
            blob = client.download_media("125")
        assert blob.data == JPEG and blob.mime_type == "image/png"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
