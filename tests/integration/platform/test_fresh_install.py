"""A newcomer's first run: ``pip install .`` into a fresh virtual environment, then
``archiver serve`` in an empty folder, with nothing else set up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_pip_install_then_serve_in_an_empty_folder(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = venv / "bin" / "pip"
    # Dependencies come from the running environment's wheels cache when present; the
    # point is that the project installs and runs, not that PyPI is reachable.
    subprocess.run(
        [str(pip), "install", "-q", str(REPO)],
        check=True,
        timeout=900,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "archiver"), "serve", "--port", str(port)],
        cwd=empty,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.3)
        assert health.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        backends = ready.json()["backends"]
        assert backends["object_store"] == {"name": "local", "ok": True}
        assert backends["index"] == {"name": "sqlite", "ok": True}
        assert (empty / "archive-data" / "evidence").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
