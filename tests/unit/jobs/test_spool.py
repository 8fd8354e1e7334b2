"""The spool sweep deletes exactly the folders of dead processes: never a live sibling's
(``serve --workers N`` share the root), never this process's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from archiver.jobs.spool import Spool

CHILD = """
import sys, time
from pathlib import Path
from archiver.jobs.spool import Spool
d = Spool(Path(sys.argv[1])).process_dir()
(d / "scratch.bin").write_bytes(b"plaintext")
print(d, flush=True)
time.sleep(120)
"""


def _child(root: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], env=env,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None
    return p, Path(p.stdout.readline().strip())


def test_sweep_removes_dead_processes_folders_only(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    mine = spool.process_dir()
    (mine / "own.bin").write_bytes(b"x")
    live, live_dir = _child(root)
    dead, dead_dir = _child(root)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=30)
        assert (dead_dir / "scratch.bin").exists()
        removed = spool.sweep()
        assert removed == [dead_dir]
        assert not dead_dir.exists()
        assert (live_dir / "scratch.bin").exists(), "a live sibling's folder was swept"
        assert (mine / "own.bin").exists()
        assert spool.process_dir() == mine
        assert oct(root.stat().st_mode & 0o777) == "0o700"
    finally:
        live.kill()
        live.wait(timeout=30)
    time.sleep(0.1)
    assert spool.sweep() == [live_dir]
