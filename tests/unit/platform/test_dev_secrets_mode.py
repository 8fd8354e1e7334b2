"""issue 14 #11: ``dev-secrets.json`` is never readable by others, not even for an instant.

The old code wrote the file with the process umask (0644) and chmod'ed it afterwards, so
the secrets were world-readable between the write and the chmod (and for good after a
crash there). A Python audit hook (PEP 578) looks at the data folder at every file-system
step the code takes, so the test catches the window whatever the implementation does.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.settings import _dev_secret_defaults

_WATCH: dict[str, Any] = {"dir": None, "seen": []}
_FS_EVENTS = ("open", "os.chmod", "os.rename", "os.link", "os.replace", "os.remove", "os.fsync")
_hook_lock = threading.Lock()
_hook_installed = False


def _snapshot(_event: str, _args: tuple[Any, ...]) -> None:
    folder = _WATCH["dir"]
    if folder is None or _event not in _FS_EVENTS:
        return
    _WATCH["dir"] = None  # no re-entry: listing the folder opens it too
    try:
        for entry in os.scandir(folder):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                _WATCH["seen"].append((entry.name, stat.S_IMODE(info.st_mode), _event))
    finally:
        _WATCH["dir"] = folder


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Path]:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:  # audit hooks cannot be removed: install once, then toggle
            sys.addaudithook(_snapshot)
            _hook_installed = True
    old_umask = os.umask(0o022)  # the usual default: files 0644 unless asked otherwise
    _WATCH["seen"] = []
    _WATCH["dir"] = str(tmp_path)
    try:
        yield tmp_path
    finally:
        _WATCH["dir"] = None
        os.umask(old_umask)


def test_dev_secrets_are_never_readable_by_others(watched: Path) -> None:
    values = _dev_secret_defaults(watched)
    final = watched / "dev-secrets.json"
    assert json.loads(final.read_text()) == values
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    # Every regular file that held bytes, at every file-system step, was owner-only.
    assert _WATCH["seen"], "the hook saw nothing: the test would pass vacuously"
    exposed = [(name, oct(mode), at) for name, mode, at in _WATCH["seen"] if mode & 0o077]
    assert exposed == []
    # Nothing is left beside it (no temporary file with secrets in it).
    assert sorted(p.name for p in watched.iterdir()) == ["dev-secrets.json"]


def test_dev_secrets_are_generated_once(watched: Path) -> None:
    first = _dev_secret_defaults(watched)
    assert _dev_secret_defaults(watched) == first
