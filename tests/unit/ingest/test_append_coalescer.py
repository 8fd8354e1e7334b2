"""Batches finishing together share one proof-log append (``AppendCoalescer``), on the
real embedded log: every batch gets the indices of its own entries, each entry is a leaf
once, and a retry finds its entries instead of appending them again."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.ingest.appends import AppendCoalescer
from archiver.ledger.errors import LedgerError
from archiver.ledger.log import TransparencyLog
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, Retention
from archiver.store.state_sqlite import SqliteStateStore


class CountingLog(TransparencyLog):
    """The real log, counting its appends and slowed a little, as over a network."""

    appends = 0

    def append(self, entries: Sequence[bytes], *, once_since: int | None = None) -> list[int]:
        self.appends += 1
        threading.Event().wait(0.02)
        return super().append(entries, once_since=once_since)


def _log(tmp_path: Path) -> CountingLog:
    (tmp_path / "objects").mkdir()
    return CountingLog(
        LocalObjectStore(tmp_path / "objects"),
        SqliteStateStore(tmp_path / "state.db"),
        "archive.test/coalesce",
        lambda: Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1)),
    )


def test_concurrent_batches_share_appends_and_get_their_own_indices(tmp_path: Path) -> None:
    log = _log(tmp_path)
    appends = AppendCoalescer(log)
    groups = [[f"batch {b} entry {i}".encode() for i in range(1 + b % 3)] for b in range(24)]
    results: dict[int, list[int]] = {}
    start = threading.Barrier(len(groups))

    def batch(b: int) -> None:
        since = log.size()
        start.wait()
        results[b] = appends.append_once(groups[b], since)

    threads = [threading.Thread(target=batch, args=(b,)) for b in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    size = log.size()
    assert size == sum(len(g) for g in groups)
    leaves = log.entries(0, size)
    for b, group in enumerate(groups):
        assert [leaves[i] for i in results[b]] == group
    assert log.appends < len(groups)  # coalesced: fewer log appends than batches

    # A batch's retry (its entries appended by an attempt that died before saving the
    # outcome) finds them instead of appending them again; a new batch is appended.
    appends_before = log.appends
    again = appends.append_once(groups[5], 0)
    assert again == results[5] and log.size() == size
    assert appends.append_once([b"late batch"], size) == [size]
    assert log.appends == appends_before + 2


def test_a_failed_append_fails_every_batch_of_its_group(tmp_path: Path) -> None:
    log = _log(tmp_path)
    appends = AppendCoalescer(log)
    too_big = [b"x" * (1 << 20)]  # over the log's entry size limit: the append raises
    with pytest.raises(LedgerError, match="exceeds"):  # the log's own error reaches us
        appends.append_once(too_big, 0)
    assert appends.append_once([b"next"], 0) == [0]  # and the next append goes through
