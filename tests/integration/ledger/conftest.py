"""Backends for the ledger integration tests: the local store + SQLite state, and real
MinIO (S3 adapter + S3 state store). The S3 address comes from ``scripts/services env``;
missing under CI=true fails, otherwise S3 cases skip. (Local stand-in for the shared
``s3_endpoint`` fixture of tests/conftest.py, which did not exist yet.)
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def s3_settings() -> dict[str, str]:
    names = (
        "ARCHIVER_TEST_S3_ENDPOINT",
        "ARCHIVER_TEST_S3_ACCESS_KEY",
        "ARCHIVER_TEST_S3_SECRET_KEY",
    )
    values = {n: os.environ.get(n, "") for n in names}
    missing = [n for n, v in values.items() if not v]
    if missing:
        msg = f'MinIO not configured ({", ".join(missing)}); run: eval "$(scripts/services env)"'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return {
        "endpoint": values["ARCHIVER_TEST_S3_ENDPOINT"],
        "access_key": values["ARCHIVER_TEST_S3_ACCESS_KEY"],
        "secret_key": values["ARCHIVER_TEST_S3_SECRET_KEY"],
    }


def make_backend(kind: str, tmp_path: Path) -> dict[str, Any]:
    if kind == "local":
        return {
            "kind": "local",
            "root": str(tmp_path / "objects"),
            "db": str(tmp_path / "state.db"),
        }
    from archiver.store._s3common import make_client
    from archiver.store.s3 import create_locked_bucket
    from archiver.store.state_s3 import S3StateStore

    cfg: dict[str, Any] = {"kind": "s3", **s3_settings()}
    cfg["bucket"] = f"ledger-{uuid.uuid4().hex[:16]}"
    cfg["state_bucket"] = f"ledger-state-{uuid.uuid4().hex[:12]}"
    client = make_client(cfg["endpoint"], cfg["access_key"], cfg["secret_key"], secure=False)
    create_locked_bucket(client, cfg["bucket"])  # left behind: its versions are locked
    S3StateStore(client, cfg["state_bucket"]).ensure_bucket()
    return cfg


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    return make_backend(request.param, tmp_path)
