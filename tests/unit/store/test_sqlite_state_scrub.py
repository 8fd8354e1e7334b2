"""The SQLite state store leaves no overwritten value in its files once scrubbed, and its
files are private from creation (issue 14 finding 7)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from archiver.store.state_sqlite import SqliteStateStore, private_dir
from search.sqlite import SqliteIndex


def _bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def test_an_overwritten_and_a_deleted_value_leave_no_bytes_after_scrub(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    wrapped = secrets.token_bytes(40)
    other = secrets.token_bytes(40)
    token = store.put("keys/dk/k1", b'{"wrapped":"' + wrapped.hex().encode() + b'"}')
    store.put("capkeys/b1", other)
    for i in range(50):  # neighbours on the same pages
        store.put(f"keys/dk/n{i:03}", secrets.token_bytes(60))
    assert wrapped.hex().encode() in _bytes(tmp_path)
    store.put("keys/dk/k1", b'{"shredded_at":"now"}', if_match=token)
    store.delete("capkeys/b1")
    store.scrub()
    data = _bytes(tmp_path)
    assert wrapped.hex().encode() not in data and other not in data
    assert (tmp_path / "state.sqlite3-wal").stat().st_size == 0


def test_state_and_index_files_are_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files would be 0644 by default
    try:
        folder = tmp_path / "data"
        private_dir(folder)
        store = SqliteStateStore(folder / "state.sqlite3")
        store.put("a", b"b")
        index = SqliteIndex(folder / "index.sqlite3")
        index.ensure_index()
        index.upsert([])
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in folder.iterdir())
    assert {"state.sqlite3", "state.sqlite3-wal", "index.sqlite3"} <= set(names)
    for name in names:
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def test_an_existing_open_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - an older install's open folder, to be tightened
    private_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
