"""The log keeps a bounded amount of what it read: an export reads every entry bundle of
its scope once (~90 KB a bundle of 256 records), and the log's cache, bounded only by
count (4,096 objects), held 35 MB of them at 100,000 records (issue 11, bench at
100,000: the peak RSS grew with the export's size)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.ledger import log as log_module
from archiver.ledger.log import TransparencyLog
from archiver.ledger.tiles import TILE_WIDTH
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, Retention
from archiver.store.state_sqlite import SqliteStateStore

ENTRY = 4000  # bytes: a bundle of 256 is ~1 MB, so a few bundles exceed the budget


def _log(tmp_path: Path) -> TransparencyLog:
    return TransparencyLog(LocalObjectStore(tmp_path / "objects"),
                           SqliteStateStore(tmp_path / "state.db"), "archive.example/log",
                           lambda: Retention(LockMode.GOVERNANCE,
                                             datetime.now(UTC) + timedelta(days=1)))  # fmt: skip


def test_reading_every_bundle_keeps_the_heap_flat(tmp_path: Path) -> None:
    bundles = 24  # ~24 MB of entries, three times the cache's byte budget
    log = _log(tmp_path)
    for b in range(0, bundles, 4):
        log.append([b"%08d" % i + b"x" * (ENTRY - 8)
                    for i in range(b * TILE_WIDTH, (b + 4) * TILE_WIDTH)])  # fmt: skip
    size = log.size()
    assert size == bundles * TILE_WIDTH
    log = _log(tmp_path)  # a fresh process's log: nothing cached by the appends
    heap: dict[int, int] = {}
    tracemalloc.start()
    try:
        for b in range(bundles):
            got = log.entries(b * TILE_WIDTH, (b + 1) * TILE_WIDTH, size)
            assert got[0].startswith(b"%08d" % (b * TILE_WIDTH))  # the right bundle, read
            del got
            if b + 1 in (12, 24):
                heap[b + 1] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        log.close()
    # Every bundle kept: +12 MB between the two samples. Bounded: the budget was full by
    # the first sample, so the heap stays within a bundle of it.
    assert heap[24] - heap[12] < 1_500_000, heap
    assert heap[24] < log_module.CACHE_BYTES + 2_000_000, heap


def test_a_read_after_eviction_still_gives_the_logged_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "_VERSIONS_KEPT", 2)  # version ids evicted too
    log = _log(tmp_path)
    log.append([b"entry-%d" % i for i in range(3 * TILE_WIDTH)])
    size = log.size()
    small = TransparencyLog(log.objects, log.state, log.origin, log.retention_for_log,
                            cache_bytes=TILE_WIDTH * 8)  # fmt: skip
    for _ in range(2):  # the second round reads everything again, from the store
        for b in range(3):
            got = small.entries(b * TILE_WIDTH, (b + 1) * TILE_WIDTH, size)
            assert got == [b"entry-%d" % i for i in range(b * TILE_WIDTH, (b + 1) * TILE_WIDTH)]
    assert len(small._versions) <= 2  # the bound itself is the point
    assert small.root_at(size) == log.root_at(size)
    log.close()
    small.close()
