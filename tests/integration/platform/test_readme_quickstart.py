"""The README's quick start, run as written (issue 13, finding 1).

The commands come from the README text itself, so the two cannot drift apart: a fresh
copy of the checkout, the set-up line verbatim (a new venv, ``pip install .``), the
service started in the background and probed on /healthz, then the "next" block
verbatim in a second shell. Only ``scripts/test`` is left out (it is this suite), and
the service's port is given as ARCHIVER_PORT (which ``serve`` reads; ``demo`` reads
ARCHIVER_URL) so that it cannot collide with anything on 8080; the URLs in the next
block are pointed at that port.
Needs no servers, but installs the package from PyPI: marked slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def quick_start_blocks(readme: str) -> list[str]:
    """The ``sh`` blocks of the README's Quick start section, in order."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_checkout(dest: Path) -> None:
    """The files a fresh clone would have (tracked, plus new ones not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _env(port: int) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_INDEX_URL", "PIP_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep}  # no ARCHIVER_* from outside
    env.update(ARCHIVER_PORT=str(port), ARCHIVER_URL=f"http://127.0.0.1:{port}",
               PIP_DISABLE_PIP_VERSION_CHECK="1")  # fmt: skip
    return env


def test_blocks_are_what_a_newcomer_types() -> None:
    blocks = quick_start_blocks((REPO / "README.md").read_text())
    assert blocks[0] == (
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/archiver serve"
    )
    assert "scripts/test" in blocks
    nxt = blocks[blocks.index("scripts/test") + 1]
    # Every archiver command in the next steps says where it is: no PATH assumed.
    assert re.findall(r"(?<![/\w])archiver ", nxt) == [], nxt


def test_quick_start_runs_verbatim(tmp_path: Path) -> None:
    blocks = quick_start_blocks((REPO / "README.md").read_text())
    setup, rest = blocks[0], [b for b in blocks[1:] if b != "scripts/test"]
    steps = [s.strip() for s in setup.split("&&")]
    serve = next(s for s in steps if "archiver serve" in s)
    before = steps[: steps.index(serve)]
    assert before and steps[-1] == serve, setup

    checkout = tmp_path / "clone"
    checkout.mkdir()
    _copy_checkout(checkout)
    port = _free_port()
    env = _env(port)

    installed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", " && ".join(before)],
        cwd=checkout, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-4000:]

    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"], cwd=checkout, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[1][-4000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service never answered /healthz"
            time.sleep(0.5)

        for block in rest:
            script = block.replace("http://127.0.0.1:8080", base)
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=checkout, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, (block, done.stdout, done.stderr)
            assert f"archive: {checkout / 'archive-data'}" in done.stderr, done.stderr
            if "curl" in block:  # the search answered: the token worked (empty archive yet)
                assert json.loads(done.stdout)["total"] == 0, done.stdout
            if "archiver demo" in block:
                assert "sent" in done.stdout and "curl" in done.stdout, done.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            _, err = server.communicate()
    # The start-up said where the data is and where to point Meta.
    assert str(checkout / "archive-data") in err, err[-3000:]
    assert f"{base}/webhooks/whatsapp" in err, err[-3000:]
