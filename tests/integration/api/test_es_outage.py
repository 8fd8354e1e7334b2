"""Elasticsearch down: capture goes on (S3 on real MinIO), the index lag grows and shows in
``/readyz`` and ``/metrics``; once ES is back the follower catches up by itself and the
messages are searchable. Uses the app's own workers (inline), nothing driven by hand."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from tests.conftest import Services
from tests.support.apps import embedded_settings, running_app
from tests.support.webhooks import Number, post

pytestmark = pytest.mark.integration

A = Number("15550003333", "3003")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _lag(client: Any) -> int | None:
    value: int | None = client.get("/readyz").json().get("index_lag")
    return value


def test_es_outage_capture_continues_and_index_catches_up(
    tmp_path: Path, s3_endpoint: dict[str, str], es_url: str, services: Services
) -> None:
    tag = uuid.uuid4().hex[:10]
    settings = embedded_settings(
        tmp_path / "data", store="s3", s3_endpoint=s3_endpoint["endpoint"],
        s3_access_key=s3_endpoint["access_key"], s3_secret_key=s3_endpoint["secret_key"],
        evidence_bucket=f"ev-{tag}", state_bucket=f"st-{tag}",
        index="elasticsearch", es_url=es_url, es_alias=f"test-outage-{tag}",
    )  # fmt: skip
    with running_app(settings) as (client, runtime):
        token, _ = runtime.tokens.create(role=Role.COMPLIANCE_OFFICER, name="outage")
        auth = {"Authorization": f"Bearer {token}"}
        post(client, A.text("16505559000", "wamid.O0", 1_700_000_000, "before the outage"))
        wait_for(lambda: _lag(client) == 0 and runtime.log.size() > 0, 60, "first indexing")
        services.stop("es")
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["backends"]["index"]["ok"] is False
            for i in range(5):
                post(client, A.text("16505559000", f"wamid.O{i + 1}", 1_700_000_100 + i,
                                    f"captured while elasticsearch is down {i}"))  # fmt: skip
            wait_for(lambda: (_lag(client) or 0) >= 5, 60, "lag to show the unindexed leaves")
            assert "archiver_index_up 0.0" in client.get("/metrics").text
            lag_line = [ln for ln in client.get("/metrics").text.splitlines()
                        if ln.startswith("archiver_index_lag ")]  # fmt: skip
            assert float(lag_line[0].split()[1]) >= 5
        finally:
            services.start("es")
        wait_for(lambda: _lag(client) == 0, 180, "the index to catch up")
        body = client.get("/v1/search", headers=auth, params={"q": '"elasticsearch is down"'})
        assert body.status_code == 200, body.text
        assert body.json()["total"] == 5
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        assert "archiver_index_up 1.0" in metrics
