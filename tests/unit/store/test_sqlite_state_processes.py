"""SQLite working state shared by several processes: compare-and-swap never loses an
increment, and tokens are never reused."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from archiver.store.errors import PreconditionFailed
from archiver.store.state_sqlite import SqliteStateStore

N_PROCS = 4
N_INCREMENTS = 25


def _incrementer(path: str, start: object) -> None:
    store = SqliteStateStore(Path(path))
    start.wait()  # type: ignore[attr-defined]
    done = 0
    while done < N_INCREMENTS:
        current = store.get("counter")
        assert current is not None
        try:
            store.put("counter", str(int(current.value) + 1).encode(), if_match=current.token)
            done += 1
        except PreconditionFailed:
            continue


def test_cas_increments_across_processes(tmp_path: Path):
    path = tmp_path / "state.sqlite3"
    setup = SqliteStateStore(path)
    setup.put("counter", b"0")
    setup.close()
    # "spawn", not "fork": a child forked from a process that has used the same SQLite
    # file inherits SQLite's per-process lock bookkeeping for it, which the docs warn
    # against (sqlite.org/howtocorrupt.html, section 2.6). With "fork", increments were
    # lost whenever the parent had just closed its connection to the file.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_incrementer, args=(str(path), start)) for _ in range(N_PROCS)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    final = SqliteStateStore(path).get("counter")
    assert final is not None
    assert int(final.value) == N_PROCS * N_INCREMENTS


def test_tokens_never_reused_after_delete(tmp_path: Path):
    store = SqliteStateStore(tmp_path / "s.sqlite3")
    t1 = store.put("k", b"v")
    store.delete("k")
    t2 = store.put("k", b"v")
    assert t1 != t2  # an old holder of t1 cannot win a CAS on the re-created key
    assert store.get("k").token == t2


def test_wal_mode(tmp_path: Path):
    import sqlite3

    path = tmp_path / "s.sqlite3"
    SqliteStateStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
