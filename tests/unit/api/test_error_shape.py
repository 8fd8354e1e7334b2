"""Every error leaves the service in one JSON shape: {"error": {code, message, details}}."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from archiver.runtime import Runtime
from tests.support.apps import sign


def assert_error_shape(body: Any, code: str | None = None) -> None:
    assert set(body) >= {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code


def test_unknown_route_is_404_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert_error_shape(response.json(), "not_found")


def test_wrong_method_is_405_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert_error_shape(response.json(), "method_not_allowed")


def test_missing_token_is_401_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    response = client.get("/v1/whoami")
    assert response.status_code == 401
    assert_error_shape(response.json(), "token_missing")


def test_forged_signature_is_401_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    response = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body, "wrong")}
    )
    assert response.status_code == 401
    assert_error_shape(response.json(), "signature_mismatch")


def test_oversized_body_is_413_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, runtime = app_client
    body = b"x" * (runtime.settings.max_body_bytes + 1)
    response = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")


def test_handshake_refusal_is_403_in_the_shape(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    response = client.get(
        "/webhooks/whatsapp",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
    )
    assert response.status_code == 403
    assert_error_shape(response.json(), "verify_token_mismatch")
