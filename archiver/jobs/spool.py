"""Where job attempts spool their scratch files (an export's plan, its partial package:
decrypted content), and how a dead process's leftovers are removed.

An attempt's scratch folder is deleted when the attempt ends, but not when its process is
killed (``kill -9``, OOM, power loss): the decrypted content would stay on disk, out of
reach of crypto-shredding, forever. So scratch folders live under one root of ours
(``wa-archiver-spool`` in ``<data_dir>/spool`` unless ``ARCHIVER_SPOOL_DIR``; a shared
folder named there is left as it is), owner-only, each process in its own
``p-*`` folder holding an exclusive ``flock`` on its ``.lock`` for its whole life. The
kernel drops that lock when the process dies, however it dies, so :meth:`Spool.sweep`
(at the job runner's start and before each attempt) deletes exactly the folders of dead
processes, never a live sibling's (``serve --workers N`` share the root).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import IO

_SUBDIR = "wa-archiver-spool"
_PREFIX = "p-"
_LOCK = ".lock"
# One folder per process and root (a forked child makes its own: ``os.getpid()`` differs).
_OWNED: dict[tuple[Path, int], tuple[Path, IO[bytes]]] = {}
_GUARD = threading.Lock()


class SpoolUnsafe(RuntimeError):
    """The spool folder is a symlink or belongs to another user."""


class Spool:
    def __init__(self, root: Path) -> None:
        # Our folders live in a subfolder of the configured one, so a setting naming a
        # shared folder (``/tmp``) never has its mode changed or its other ``p-*``
        # entries swept.
        self.base = Path(root)
        self.root = self.base / _SUBDIR

    def process_dir(self) -> Path:
        """This process's scratch folder under the root (made and locked on first use),
        after sweeping dead processes' folders."""
        self.sweep()
        key = (self.root.resolve(), os.getpid())
        with _GUARD:
            owned = _OWNED.get(key)
            if owned is not None and owned[0].is_dir():
                return owned[0]
            folder = key[0] / f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            folder.mkdir(mode=0o700)
            # Locked before it takes its name: a sweeper never sees an unlocked ``.lock``
            # of a live process.
            pending = folder / f"{_LOCK}.new"
            lock = pending.open("wb")
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new file: never contended
            pending.rename(folder / _LOCK)
            _OWNED[key] = (folder, lock)
            return folder

    def sweep(self) -> list[Path]:
        """Delete the folders of processes that died holding them; returns them."""
        if not self.base.exists():
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)  # made by us: private
        self.root.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(self.root)
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
            raise SpoolUnsafe(f"{self.root} is a symlink or not ours: refusing to spool there")
        os.chmod(self.root, 0o700)  # scratch files hold decrypted content
        root = self.root.resolve()
        mine = {owned[0] for key, owned in _OWNED.items() if key[1] == os.getpid()}
        removed: list[Path] = []
        for folder in sorted(root.glob(f"{_PREFIX}*")):
            if folder in mine or not folder.is_dir():
                continue
            if _owner_alive(folder):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        return removed


def _owner_alive(folder: Path) -> bool:
    """Whether a live process holds the folder's lock (a folder just made, still without
    its ``.lock``, counts as live until it is a minute old)."""
    try:
        f = (folder / _LOCK).open("rb")
    except FileNotFoundError:
        return _young(folder)
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _young(folder: Path, seconds: float = 60.0) -> bool:
    try:
        return time.time() - folder.stat().st_mtime < seconds
    except FileNotFoundError:
        return True
