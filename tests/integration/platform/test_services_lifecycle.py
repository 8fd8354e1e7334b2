"""scripts/services against a real MinIO: the outage contract other tests rely on.

Runs a second, private MinIO (its own state folder under tmp_path) from the cached binary,
so the shared servers of the test run are never touched. `stop` then `start` must bring
back the same port, credentials and data; `reset` must forget them.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

REPO = Path(__file__).resolve().parents[3]
SERVICES = REPO / "scripts" / "services"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.integration


def services(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVER_SERVICES_DIR": str(state)}
    result = subprocess.run(
        [str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result


def exports(state: Path) -> dict[str, str]:
    out = services(state, "env").stdout
    pairs = (line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return {k: v.strip("'") for k, v in pairs}


def listening(endpoint: str) -> bool:
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def private_state(tmp_path: Path) -> Iterator[Path]:
    cache = Path(os.environ.get("ARCHIVER_CACHE", "/var/cache/wa-archiver"))
    if not list(cache.glob("minio-*/minio")):
        message = f"no MinIO binary in {cache}: run scripts/services install minio"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    state = tmp_path / "services"
    yield state
    services(state, "reset", "all")


def test_stop_start_keeps_port_credentials_and_data(private_state: Path) -> None:
    services(private_state, "start", "minio")
    first = exports(private_state)
    endpoint = first["ARCHIVER_TEST_S3_ENDPOINT"]
    pid = (private_state / "minio" / "pid").read_text()
    client = Minio(
        endpoint,
        first["ARCHIVER_TEST_S3_ACCESS_KEY"],
        first["ARCHIVER_TEST_S3_SECRET_KEY"],
        secure=False,
    )
    client.make_bucket("lifecycle", object_lock=True)
    client.put_object("lifecycle", "kept", io.BytesIO(b"still here"), 10)

    services(private_state, "start", "minio")  # running: a no-op
    assert (private_state / "minio" / "pid").read_text() == pid

    services(private_state, "stop", "minio")
    assert not listening(endpoint)
    assert "stopped (port" in services(private_state, "status").stdout
    services(private_state, "stop", "minio")  # stopped: a no-op

    services(private_state, "start", "minio")
    assert exports(private_state) == first
    assert client.get_object("lifecycle", "kept").read() == b"still here"

    services(private_state, "reset", "minio")
    assert not listening(endpoint)
    assert not (private_state / "minio").exists()
    services(private_state, "start", "minio")
    fresh = exports(private_state)
    assert fresh["ARCHIVER_TEST_S3_SECRET_KEY"] != first["ARCHIVER_TEST_S3_SECRET_KEY"]
    again = Minio(
        fresh["ARCHIVER_TEST_S3_ENDPOINT"],
        fresh["ARCHIVER_TEST_S3_ACCESS_KEY"],
        fresh["ARCHIVER_TEST_S3_SECRET_KEY"],
        secure=False,
    )
    assert not again.bucket_exists("lifecycle")


def test_postgres_stop_start_keeps_port_password_and_data(tmp_path: Path) -> None:
    """The pg service: a private cluster, the same DSN and data after stop/start, nothing
    after reset (and its run folder, owned by the server's user, removed)."""
    from archiver.store.errors import StoreUnavailable
    from archiver.store.state_pg import PgStateStore

    state = tmp_path / "services"
    try:
        services(state, "start", "pg")
        first = exports(state)["ARCHIVER_TEST_PG_DSN"]
        run_dir = Path((state / "pg" / "run_dir").read_text().strip())
        store = PgStateStore(first)
        store.put("lifecycle", b"kept")
        services(state, "stop", "pg")
        with pytest.raises(StoreUnavailable):
            store.get("lifecycle")
        services(state, "start", "pg")
        assert exports(state)["ARCHIVER_TEST_PG_DSN"] == first
        got = store.get("lifecycle")  # a new connection after the broken one
        assert got is not None and got.value == b"kept"
        store.close()
        services(state, "reset", "pg")
        assert not (state / "pg").exists() and not run_dir.exists()
        assert "ARCHIVER_TEST_PG_DSN" not in services(state, "env").stdout
    finally:
        services(state, "reset", "pg")
