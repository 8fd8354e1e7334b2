"""Who a refused request came from: X-Forwarded-For counts only from a named proxy.

uvicorn believes the header from loopback by default, so anything on the host could pose
as any address in the refusal aggregates. ``archiver serve`` believes no one unless
``ARCHIVER_TRUSTED_PROXIES`` names the proxy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

FORGED = "203.0.113.9"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _refusal_peer(tmp_path: Path, extra_env: dict[str, str]) -> str | None:
    """Start serve, send one badly signed webhook with a forged X-Forwarded-For, and
    return the peer its refusal was logged under."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env.update({"ARCHIVER_DATA_DIR": str(tmp_path / "data"), "ARCHIVER_LOG_LEVEL": "INFO"})
    env.update(extra_env)
    log_path = tmp_path / "serve.log"
    archiver = Path(sys.executable).with_name("archiver")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(archiver), "serve", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "serve did not come up"
                    time.sleep(0.3)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/webhooks/whatsapp",
                content=b'{"object":"whatsapp_business_account","entry":[]}',
                headers={"X-Hub-Signature-256": "sha256=" + "0" * 64,
                         "Content-Type": "application/json", "X-Forwarded-For": FORGED},
            )  # fmt: skip
            assert answer.status_code == 401, answer.text
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    peers = []
    for line in log_path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "peer" in event and "reason" in event:
            peers.append(event["peer"])
    assert peers, f"no refusal logged:\n{log_path.read_text()}"
    return peers[0]


@pytest.mark.slow
def test_forwarded_for_is_not_believed_by_default(tmp_path: Path) -> None:
    assert _refusal_peer(tmp_path, {}) == "127.0.0.1"


@pytest.mark.slow
def test_forwarded_for_is_believed_from_a_named_proxy(tmp_path: Path) -> None:
    assert _refusal_peer(tmp_path, {"ARCHIVER_TRUSTED_PROXIES": "127.0.0.1"}) == FORGED
