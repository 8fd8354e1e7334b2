"""Shared fixtures: where the real servers and the shared fixtures are.

Integration tests read server addresses from the environment that
``scripts/services env`` prints. Under ``CI=true`` a missing server is a failure,
never a skip; on a developer machine it skips with the command to run.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    message = (
        f'{what} is not available; run: eval "$(scripts/services env)" after scripts/services start'
    )
    if IN_CI:
        pytest.fail(message + " (CI=true: integration tests never skip)")
    pytest.skip(message)


def shared_dir() -> Path:
    return Path(os.environ.get("ARCHIVER_SHARED_DIR", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "fixtures" / "whatsapp").is_dir():
        _missing(f"the shared fixtures folder ({path})")
    return path


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint() -> dict[str, str]:
    """``{"endpoint": "127.0.0.1:PORT", "access_key": ..., "secret_key": ...}``."""
    endpoint = os.environ.get("ARCHIVER_TEST_S3_ENDPOINT")
    if not endpoint:
        _missing("MinIO (ARCHIVER_TEST_S3_ENDPOINT)")
    assert endpoint is not None
    host, _, port = endpoint.rpartition(":")
    if not _reachable(host, int(port)):
        _missing(f"MinIO at {endpoint}")
    return {
        "endpoint": endpoint,
        "access_key": os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        "secret_key": os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
    }


@pytest.fixture(scope="session")
def es_url() -> str:
    url = os.environ.get("ARCHIVER_TEST_ES_URL")
    if not url:
        _missing("Elasticsearch (ARCHIVER_TEST_ES_URL)")
    assert url is not None
    hostport = url.split("//", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not _reachable(host, int(port)):
        _missing(f"Elasticsearch at {url}")
    return url


class Services:
    """Stop and start the real servers (outage tests). Only what scripts/services started."""

    def __init__(self, script: str) -> None:
        self.script = script

    def _run(self, *args: str) -> None:
        subprocess.run([self.script, *args], check=True, timeout=300)

    def stop(self, name: str) -> None:
        self._run("stop", name)

    def start(self, name: str) -> None:
        self._run("start", name)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    script = os.environ.get("ARCHIVER_SERVICES_SCRIPT")
    if not script:
        _missing("the services script (ARCHIVER_SERVICES_SCRIPT)")
    assert script is not None
    yield Services(script)
