"""``TransparencyLog.entry_reader``: many entry reads in one tree with one read of the log's
size (the report's lock sample), giving exactly what ``entry`` gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.ledger.errors import ProofError
from archiver.ledger.log import TransparencyLog
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, Retention
from archiver.store.state_sqlite import SqliteStateStore


class _CountingState(SqliteStateStore):
    gets = 0

    def get(self, key: str):  # type: ignore[no-untyped-def]
        type(self).gets += 1
        return super().get(key)


def test_entry_reader_reads_the_size_once_and_matches_entry(tmp_path: Path) -> None:
    state = _CountingState(tmp_path / "state.db")
    log = TransparencyLog(LocalObjectStore(tmp_path / "objects"), state, "archive.example/log",
                          lambda: Retention(LockMode.GOVERNANCE,
                                            datetime.now(UTC) + timedelta(days=1)))
    log.append([b"entry-%d" % i for i in range(300)])  # a full bundle and a partial one
    log.append([b"later"])
    read = log.entry_reader(300)  # pinned below the latest size
    _CountingState.gets = 0
    got = [read(i) for i in (299, 0, 256, 7, 255)]
    assert got == [b"entry-299", b"entry-0", b"entry-256", b"entry-7", b"entry-255"]
    assert _CountingState.gets == 0  # no log-state read per entry
    assert [log.entry(i, 300) for i in (299, 0, 256)] == got[:3]
    with pytest.raises(ProofError):
        read(300)  # outside the pinned tree, though logged
    with pytest.raises(ProofError):
        read(-1)
