"""Factories for a real app on the embedded backends (local folder, SQLite)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from archiver.api.app import create_app
from archiver.runtime import Runtime
from archiver.settings import Settings, load_settings

APP_SECRET = "test-app-secret-0123456789"
VERIFY_TOKEN = "test-verify-token"


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "app_secrets": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "lock_mode": "GOVERNANCE",
    }
    values.update(overrides)
    return load_settings(**values)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@contextmanager
def running_app(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, app.state.runtime


def backend_settings(request: Any, tmp: Path, backend: str, **overrides: Any) -> Settings:
    """Settings for ``backend`` "embedded" (local folder + SQLite) or "servers" (real MinIO
    + Elasticsearch, fresh buckets and alias per call). Server fixtures are looked up only
    for "servers", so embedded runs need no server."""
    if backend == "embedded":
        return embedded_settings(tmp, **overrides)
    import uuid

    s3 = request.getfixturevalue("s3_endpoint")
    es_url = request.getfixturevalue("es_url")
    unique = uuid.uuid4().hex[:12]
    values: dict[str, Any] = {
        "store": "s3",
        "s3_endpoint": s3["endpoint"],
        "s3_access_key": s3["access_key"],
        "s3_secret_key": s3["secret_key"],
        "evidence_bucket": f"ev-{unique}",
        "state_bucket": f"st-{unique}",
        "index": "elasticsearch",
        "es_url": es_url,
        "es_alias": f"wa-{unique}",
    }
    values.update(overrides)
    return embedded_settings(tmp, **values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``ARCHIVER_*`` environment that reproduces ``settings`` in a subprocess."""
    import os

    from pydantic import SecretStr

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"ARCHIVER_{name.upper()}"] = str(value.value if hasattr(value, "value") else value)
    return env
