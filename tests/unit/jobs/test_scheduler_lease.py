"""A scheduled singleton's lease after a crash: a job added with ``release_after`` is run
at once by the next process; a sticky one waits out the dead owner's lease."""

from __future__ import annotations

import time
from pathlib import Path

from archiver.jobs.scheduler import Jobs
from archiver.store.state_sqlite import SqliteStateStore


def _run_once(jobs: Jobs, name: str, timeout: float = 20.0) -> None:
    jobs.start()
    try:
        deadline = time.monotonic() + timeout
        while jobs.runs.get(name, 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        jobs.stop()


def _first_process_then_second(tmp_path: Path, *, release_after: bool) -> tuple[int, int]:
    state = SqliteStateStore(tmp_path / "state.sqlite3")
    calls: list[str] = []
    first = Jobs(state)  # a process that ran the job, then died without a clean stop
    first.add("resume", lambda: calls.append("first"), seconds=3600, lease_ttl=300,
              at_start=True, release_after=release_after)  # fmt: skip
    _run_once(first, "resume")
    second = Jobs(state)  # the restarted process: a new lease owner
    second.add("resume", lambda: calls.append("second"), seconds=3600, lease_ttl=300,
               at_start=True, release_after=release_after)  # fmt: skip
    second.start()
    time.sleep(1.0)  # its at-start run has happened (or been skipped) by now
    second.stop()
    return calls.count("first"), calls.count("second")


def test_a_released_lease_lets_the_restarted_process_run_at_once(tmp_path: Path) -> None:
    assert _first_process_then_second(tmp_path, release_after=True) == (1, 1)


def test_a_sticky_lease_keeps_the_job_with_its_owner(tmp_path: Path) -> None:
    assert _first_process_then_second(tmp_path, release_after=False) == (1, 0)
