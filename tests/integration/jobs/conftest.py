"""Durable-job fixtures: the same tests on the embedded default (SQLite working state,
``<data_dir>/workarea``) and on real MinIO (state bucket, working-area bucket)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from archiver.jobs.durable import JobService
from archiver.runtime import open_state_store
from archiver.settings import Settings
from tests.support.apps import embedded_settings

MakeSettings = Callable[..., Settings]


@pytest.fixture(params=["embedded", "minio"])
def make_settings(request: pytest.FixtureRequest, tmp_path: Path) -> MakeSettings:
    """Settings for one archive (same data dir / buckets on every call of one test)."""
    base: dict[str, Any] = {"jobs_heartbeat_ttl_s": 1.0}
    if request.param == "minio":
        s3 = request.getfixturevalue("s3_endpoint")
        unique = uuid.uuid4().hex[:12]
        base.update(store="s3", s3_endpoint=s3["endpoint"], s3_access_key=s3["access_key"],
                    s3_secret_key=s3["secret_key"], evidence_bucket=f"ev-{unique}",
                    state_bucket=f"st-{unique}", workarea_bucket=f"wk-{unique}")

    def make(**overrides: Any) -> Settings:
        return embedded_settings(tmp_path / "data", **{**base, **overrides})

    return make


def service_for(settings: Settings, **attrs: Any) -> JobService:
    service = JobService.from_settings(settings, open_state_store(settings, create=True))
    service.poll_interval = 0.1
    for name, value in attrs.items():
        setattr(service, name, value)
    return service
