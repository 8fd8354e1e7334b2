"""scripts/services, scripts/test and .ci/run: syntax and the parts that need no server.

Starting and stopping real servers is tested in
``tests/integration/platform/test_services_lifecycle.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SERVICES = REPO / "scripts" / "services"
SCRIPTS = [
    SERVICES,
    REPO / "scripts" / "test",
    REPO / "scripts" / "compose-certs",
    REPO / ".ci" / "run",
]


def run(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVER_SERVICES_DIR": str(state)}
    return subprocess.run(
        [str(SERVICES), *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable_strict_bash(script: Path) -> None:
    assert os.access(script, os.X_OK), f"{script} is not executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_no_command_prints_usage(tmp_path: Path) -> None:
    result = run(state=tmp_path)
    assert result.returncode == 2
    assert "start [svc]" in result.stdout


def test_unknown_service_is_an_error(tmp_path: Path) -> None:
    result = run("start", "redis", state=tmp_path)
    assert result.returncode == 1
    assert "unknown service 'redis'" in result.stderr


def test_status_and_env_on_a_fresh_state_folder(tmp_path: Path) -> None:
    status = run("status", state=tmp_path)
    assert status.returncode == 0
    assert status.stdout.splitlines() == [
        "minio: not started", "es: not started", "pg: not started"
    ]
    env = run("env", state=tmp_path)
    assert env.returncode == 0
    assert f"export ARCHIVER_SERVICES_SCRIPT='{SERVICES}'" in env.stdout
    assert f"export ARCHIVER_SERVICES_DIR='{tmp_path}'" in env.stdout
    assert "ARCHIVER_TEST_S3_ENDPOINT" not in env.stdout
    assert "ARCHIVER_TEST_ES_URL" not in env.stdout
    assert "ARCHIVER_TEST_PG_DSN" not in env.stdout


def test_env_prints_what_an_earlier_start_remembered(tmp_path: Path) -> None:
    (tmp_path / "minio").mkdir()
    (tmp_path / "minio" / "port").write_text("41234\n")
    (tmp_path / "minio" / "access_key").write_text("archiver-test\n")
    (tmp_path / "minio" / "secret_key").write_text("s3cr3t\n")
    (tmp_path / "es").mkdir()
    (tmp_path / "es" / "port").write_text("41235\n")
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "port").write_text("41236\n")
    (tmp_path / "pg" / "password").write_text("pw\n")
    env = run("env", state=tmp_path)
    assert env.returncode == 0
    lines = env.stdout.splitlines()
    assert "export ARCHIVER_TEST_S3_ENDPOINT='127.0.0.1:41234'" in lines
    assert "export ARCHIVER_TEST_S3_ACCESS_KEY='archiver-test'" in lines
    assert "export ARCHIVER_TEST_S3_SECRET_KEY='s3cr3t'" in lines
    assert "export ARCHIVER_TEST_ES_URL='http://127.0.0.1:41235'" in lines
    pg = "postgresql://archiver:pw@127.0.0.1:41236/archiver"
    assert f"export ARCHIVER_TEST_PG_DSN='{pg}'" in lines
    # A stopped server keeps its port: status says so, and stop is a no-op.
    assert run("status", state=tmp_path).stdout.splitlines()[0] == (
        "minio: stopped (port 41234 and data kept)"
    )
    assert run("stop", "all", state=tmp_path).returncode == 0
    reset = run("reset", "minio", state=tmp_path)
    assert reset.returncode == 0
    assert not (tmp_path / "minio").exists()
    assert (tmp_path / "es" / "port").exists()


def test_stop_never_signals_a_pid_it_did_not_start(tmp_path: Path) -> None:
    """A pid file naming a live process that is not MinIO (here: ourselves) is ignored."""
    (tmp_path / "minio").mkdir()
    (tmp_path / "minio" / "pid").write_text(f"{os.getpid()}\n")
    result = run("stop", "minio", state=tmp_path)
    assert result.returncode == 0
    assert "stopped" not in result.stderr
    assert not (tmp_path / "minio" / "pid").exists()
