"""/readyz against real servers: 200 with every backend, then 503 naming MinIO when it
is stopped, and naming Elasticsearch when that is stopped; both back afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Services
from tests.support.apps import backend_settings, running_app


def _wait_ready(client: Any, want: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == want or time.monotonic() > deadline:
            assert response.status_code == want, response.text
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.5)


@pytest.mark.slow
def test_readyz_names_each_backend_that_is_down(
    request: pytest.FixtureRequest, tmp_path: Path, services: Services
) -> None:
    settings = backend_settings(request, tmp_path, "servers")
    with running_app(settings) as (client, _runtime):
        body = _wait_ready(client, 200)
        assert body["backends"]["object_store"] == {"name": "s3", "ok": True}
        assert body["backends"]["index"] == {"name": "elasticsearch", "ok": True}
        services.stop("minio")
        try:
            body = _wait_ready(client, 503)
            assert body["error"]["code"] == "backend_unavailable"
            assert set(body["error"]["details"]["down"]) == {"object_store", "state_store"}
            assert body["backends"]["index"]["ok"] is True
        finally:
            services.start("minio")
        _wait_ready(client, 200)
        services.stop("es")
        try:
            body = _wait_ready(client, 503)
            assert body["error"]["details"]["down"] == ["index"]
            assert body["backends"]["object_store"]["ok"] is True
        finally:
            services.start("es")
        _wait_ready(client, 200, timeout=200)
