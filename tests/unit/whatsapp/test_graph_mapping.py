"""Graph answer → result/error mapping details (pure functions and httpx.MockTransport).

The behaviour against a real HTTP server lives in tests/integration/whatsapp/.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.errors import ArchiverError
from archiver.whatsapp.graph import (
    GraphAuthError,
    GraphBadResponse,
    GraphClient,
    GraphError,
    GraphNotFound,
    GraphRequestError,
    GraphUnavailable,
    MediaTooLarge,
    RetryPolicy,
    error_for,
    parse_media_info,
    parse_send_body,
)

SHARED = Path(
    os.environ.get("ARCHIVER_SHARED_DIR", Path(__file__).resolve().parents[3] / ".." / "shared")
)
API = SHARED / "fixtures" / "whatsapp" / "api"
TOKEN = "secret-token-value"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((API / name).read_text())
    return data


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    attempts: int = 1,
    sleeps: list[float] | None = None,
) -> GraphClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    policy = RetryPolicy(attempts=attempts, sleep=(sleeps if sleeps is not None else []).append)
    return GraphClient(http, token=TOKEN, base_url="https://graph.example", retry=policy)


# ---------------------------------------------------------------------------- fixtures


def test_metas_reference_media_answer_with_a_real_digest() -> None:
    body = load("media_get_url_response.meta_reference.json")
    assert body["sha256"] == "<HASH>"  # Meta's placeholder: unusable as published
    with pytest.raises(GraphBadResponse):
        parse_media_info(body, media_id="2621233374848975")

    body["sha256"] = hashlib.sha256(b"x").hexdigest()
    info = parse_media_info(body, media_id="2621233374848975")
    assert info.file_size == 303833  # "303833", a string, in Meta's reference
    assert info.id == "2621233374848975"
    assert info.mime_type == "image/jpeg"


def test_pywa_media_answer_has_an_int_file_size_and_a_fake_digest() -> None:
    body = load("media_get_url_response.pywa_docstring.json")
    with pytest.raises(GraphBadResponse):  # its sha256 is 43 chars with non-hex letters
        parse_media_info(body, media_id="137524587935346")
    body["sha256"] = "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI="
    info = parse_media_info(body, media_id="137524587935346")
    assert info.file_size == 61901
    assert info.url.startswith("https://lookaside.fbsbx.com/")


@pytest.mark.parametrize(
    ("name", "contact_keys"),
    [
        ("send_message_response_phone.json", {"input", "wa_id"}),
        ("send_message_response_bsuid.json", {"input", "user_id"}),
        ("send_message_response_phone_and_bsuid.json", {"input", "wa_id", "user_id"}),
    ],
)
def test_send_answers(name: str, contact_keys: set[str]) -> None:
    wamids, contacts = parse_send_body(load(name))
    assert wamids == ["wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"]
    assert len(contacts) == 1 and set(contacts[0]) == contact_keys


# ---------------------------------------------------------------------------- error mapping


def meta(code: int, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {"message": "m", "type": "OAuthException", "code": code, **extra}
    if subcode is not None:
        err["error_subcode"] = subcode
    return {"error": {**err, "fbtrace_id": "Axyz"}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"id": "1"}, None),
        (401, meta(190), GraphAuthError),
        (400, meta(190, 463), GraphAuthError),  # expired token
        (403, None, GraphAuthError),
        (400, meta(10), GraphAuthError),
        (400, meta(200), GraphAuthError),
        (500, meta(2), GraphUnavailable),
        (502, None, GraphUnavailable),
        (429, None, GraphUnavailable),
        (400, meta(4), GraphUnavailable),
        (400, meta(80007), GraphUnavailable),
        (400, meta(130429), GraphUnavailable),
        (400, meta(9999, is_transient=True), GraphUnavailable),
        (404, None, GraphNotFound),
        (400, meta(100, 33), GraphNotFound),
        (400, meta(100), GraphRequestError),
        (400, meta(131030), GraphRequestError),
        (200, meta(131000), GraphRequestError),  # an error body is an error, whatever the status
        (418, "not json", GraphRequestError),
    ],
)
def test_error_for(status: int, body: object, expected: type[GraphError] | None) -> None:
    error = error_for(status, body, what="t")
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert error is not None and error.http_status == status


def test_error_tree_roots_in_archiver_error() -> None:
    error = error_for(400, meta(131030), what="send")
    assert isinstance(error, ArchiverError)
    assert (
        error is not None and error.meta_code == 131030 and error.code == "graph_request_rejected"
    )


# ---------------------------------------------------------------------------- transport level


def test_transport_errors_become_unavailable_and_are_retried() -> None:
    calls: list[httpx.Request] = []

    def boom(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectTimeout("slow", request=request)

    sleeps: list[float] = []
    with pytest.raises(GraphUnavailable) as caught:
        client_for(boom, attempts=3, sleeps=sleeps).get_media_url("1")
    assert len(calls) == 3 and len(sleeps) == 2
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)


def test_non_retryable_errors_are_not_retried() -> None:
    calls: list[httpx.Request] = []

    def gone(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json=meta(100, 33))

    with pytest.raises(GraphNotFound):
        client_for(gone, attempts=5).get_media_url("1")
    assert len(calls) == 1


def media_server(
    media_url: str, body: Iterator[bytes] | bytes, seen: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v23.0/1":
            return httpx.Response(
                200,
                json={"url": media_url, "mime_type": "image/png", "sha256": "0" * 64, "id": "1"},
            )
        # A generator body: streamed, no Content-Length header.
        return httpx.Response(200, content=body)

    return handler


def test_streamed_body_without_length_is_cut_at_max_bytes() -> None:
    seen: list[httpx.Request] = []
    chunks = (b"x" * 1000 for _ in range(1000))
    client = client_for(media_server("https://lookaside.fbsbx.com/m?x=1", chunks, seen))
    with pytest.raises(MediaTooLarge):
        client.download_media("1", max_bytes=5000)


def test_token_is_never_sent_to_a_foreign_host() -> None:
    seen: list[httpx.Request] = []
    client = client_for(media_server("https://evil.example/steal", b"data", seen))
    with pytest.raises(GraphError, match="refusing to send the access token"):
        client.download_media("1")
    assert [r.url.host for r in seen] == ["graph.example"]


def test_plain_http_lookaside_is_refused() -> None:
    seen: list[httpx.Request] = []
    client = client_for(media_server("http://lookaside.fbsbx.com/m", b"data", seen))
    with pytest.raises(GraphError, match="refusing"):
        client.download_media("1")


def test_non_json_answers() -> None:
    def html(status: int) -> Callable[[httpx.Request], httpx.Response]:
        return lambda request: httpx.Response(status, text="<html>oops</html>")

    with pytest.raises(GraphBadResponse):
        client_for(html(200)).get_media_url("1")
    with pytest.raises(GraphUnavailable):
        client_for(html(502)).send_message("1", {"messaging_product": "whatsapp"})
    with pytest.raises(GraphBadResponse) as caught:
        client_for(html(200)).send_message("1", {"messaging_product": "whatsapp"})
    assert "oops" in caught.value.details["raw_body"]
    no_request_id = client_for(
        lambda r: httpx.Response(200, json={"messaging_product": "whatsapp"})
    )
    with pytest.raises(GraphBadResponse):
        no_request_id.request_smb_app_data("1", "history")


def test_mapping_payload_is_sent_as_compact_utf8_json() -> None:
    seen: list[httpx.Request] = []

    def ok(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": [{"id": "wamid.X"}], "contacts": []})

    result = client_for(ok).send_message("55", {"messaging_product": "whatsapp", "text": "é"})
    assert result.wamids == ["wamid.X"]
    assert seen[0].content == '{"messaging_product":"whatsapp","text":"é"}'.encode()
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_ids_cannot_walk_the_path() -> None:
    client = client_for(lambda r: httpx.Response(200, json={}))
    for bad in ("../me", "1/messages", "", "1?x=2"):
        with pytest.raises(ValueError):
            client.get_media_url(bad)
    with pytest.raises(ValueError):
        client.request_smb_app_data("1", "everything")  # type: ignore[arg-type]


def test_repr_hides_the_token() -> None:
    client = client_for(lambda r: httpx.Response(200, json={}))
    assert TOKEN not in repr(client)


def test_missing_is_on_biz_app_reads_false_and_wrong_types_are_refused() -> None:
    answer = client_for(lambda r: httpx.Response(200, json={"id": "1"})).get_phone_number_platform(
        "1"
    )
    assert answer == (False, None)
    with pytest.raises(GraphBadResponse):
        client_for(
            lambda r: httpx.Response(200, json={"is_on_biz_app": "yes"})
        ).get_phone_number_platform("1")
