"""The spool sweep deletes exactly the folders of dead processes: never a live sibling's
(``serve --workers N`` share the root), never this process's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.jobs.spool import Spool, SpoolUnsafe

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
        assert oct(spool.root.stat().st_mode & 0o777) == "0o700"
    finally:
        live.kill()
        live.wait(timeout=30)
    time.sleep(0.1)
    assert spool.sweep() == [live_dir]


def test_a_shared_folder_named_as_spool_keeps_its_mode_and_its_other_entries(
    tmp_path: Path,
) -> None:
    """``ARCHIVER_SPOOL_DIR=/tmp`` must not strip /tmp's sticky bit and world access, nor
    sweep someone else's old ``p-*`` folder there: the spool works in its own subfolder."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 -- a /tmp-like folder is the point
    other = shared / "p-users-backup"
    other.mkdir()
    (other / "file.txt").write_text("not ours")
    old = time.time() - 7200
    os.utime(other, (old, old))
    spool = Spool(shared)
    folder = spool.process_dir()
    spool.sweep()
    assert (other / "file.txt").read_text() == "not ours"
    assert oct(shared.stat().st_mode & 0o7777) == "0o1777"
    assert folder.parent == spool.root and spool.root.parent == shared
    assert oct(spool.root.stat().st_mode & 0o777) == "0o700"


def test_a_symlinked_spool_root_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / "wa-archiver-spool").symlink_to(target)
    with pytest.raises(SpoolUnsafe):
        Spool(base).sweep()
