"""Deny by default: every route outside the public list refuses a missing, malformed,
unknown, expired or revoked token, and a token of a role it does not allow."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from archiver.api.app import PUBLIC_PATHS
from archiver.auth import ALL_ROLES, Role
from archiver.runtime import Runtime


def _allowed_roles(dependant: Any) -> frozenset[Role] | None:
    for dep in dependant.dependencies:
        roles = getattr(dep.call, "allowed_roles", None)
        if roles is not None:
            return frozenset(roles)
        inner = _allowed_roles(dep)
        if inner is not None:
            return inner
    return None


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """APIRoutes, also inside routers that newer FastAPI keeps as included objects."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes)


def _routes(client: TestClient) -> Iterator[tuple[str, str, frozenset[Role] | None]]:
    for route in _api_routes(client.app.routes):  # type: ignore[attr-defined]
        if route.path in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "x1", route.path)
        for method in sorted(route.methods):
            yield method, path, _allowed_roles(route.dependant)


def test_every_private_route_declares_roles(app_client: tuple[TestClient, Runtime]) -> None:
    client, _ = app_client
    routes = list(_routes(client))
    assert routes, "the app has private routes"
    undeclared = [(m, p) for m, p, roles in routes if roles is None]
    assert undeclared == []


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "token_missing"),
        ("Basic abc", "token_malformed"),
        ("Bearer not-a-token", "token_malformed"),
        ("Bearer wa_deadbeef_nosuchsecret", "token_invalid"),
    ],
)
def test_bad_tokens_are_refused_everywhere(
    app_client: tuple[TestClient, Runtime], header: str | None, code: str
) -> None:
    client, _ = app_client
    headers = {"Authorization": header} if header else {}
    for method, path, _ in _routes(client):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == code


def test_expired_and_revoked_tokens_are_refused_everywhere(
    app_client: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app_client
    past = datetime.now(UTC) - timedelta(days=2)
    expired, _ = runtime.tokens.create(role=Role.ADMIN, name="old", expires_in_days=1, now=past)
    revoked, record = runtime.tokens.create(role=Role.ADMIN, name="gone")
    runtime.tokens.revoke(record.token_id)
    for method, path, _ in _routes(client):
        for token, code in ((expired, "token_expired"), (revoked, "token_revoked")):
            response = client.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == code


def test_wrong_roles_are_refused_everywhere(app_client: tuple[TestClient, Runtime]) -> None:
    client, runtime = app_client
    tokens = {role: runtime.tokens.create(role=role, name=role.value)[0] for role in Role}
    checked = 0
    for method, path, allowed in _routes(client):
        assert allowed is not None
        for role in ALL_ROLES - allowed:
            response = client.request(
                method, path, headers={"Authorization": f"Bearer {tokens[role]}"}
            )
            assert response.status_code == 403, (method, path, role)
            assert response.json()["error"]["code"] == "role_forbidden"
            checked += 1
        for role in allowed:
            response = client.request(
                method, path, headers={"Authorization": f"Bearer {tokens[role]}"}
            )
            assert response.status_code not in (401, 403), (method, path, role, response.text)
    assert checked > 0, "no route restricts roles: the walk exercised nothing"


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b'{"a": [1, 2'])
def test_a_malformed_body_does_not_come_before_the_token(
    app_client: tuple[TestClient, Runtime], body: bytes
) -> None:
    """FastAPI parses a JSON body before dependencies run: a stranger's unparseable body
    must still meet 401, and a wrong role 403, never a 422 that tells them about the route."""
    client, runtime = app_client
    tokens = {role: runtime.tokens.create(role=role, name=role.value)[0] for role in Role}
    json_type = {"Content-Type": "application/json"}
    walked = 0
    for method, path, allowed in _routes(client):
        if method not in ("POST", "PUT", "PATCH"):
            continue
        walked += 1
        response = client.request(method, path, content=body, headers=json_type)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "token_missing"
        assert allowed is not None
        for role in ALL_ROLES - allowed:
            auth = {**json_type, "Authorization": f"Bearer {tokens[role]}"}
            response = client.request(method, path, content=body, headers=auth)
            assert response.status_code == 403, (method, path, role, response.text)
    assert walked > 0


def test_valid_token_reaches_whoami(app_client: tuple[TestClient, Runtime]) -> None:
    client, runtime = app_client
    token, record = runtime.tokens.create(role=Role.AUDITOR, name="ann", numbers=["15550001"])
    response = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["role"] == "auditor"
    assert response.json()["numbers"] == ["15550001"]
    assert response.json()["token_id"] == record.token_id
