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
