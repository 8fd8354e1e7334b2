"""Singleton jobs on a schedule (APScheduler), each under a lease so that with several
replicas only one runs it at a time: checkpoint signing (every
``ARCHIVER_CHECKPOINT_INTERVAL_S``), the daily sampled verify sweep, and ``retention
apply`` whenever the policy set's fingerprint changes (checked at start-up and every
5 minutes). Other packages
add theirs with ``Jobs.add``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from archiver.jobs.lease import Lease
from archiver.logs import get_logger
from archiver.store.port import StateStore

log = get_logger("archiver.jobs")


class Jobs:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.runs: dict[str, int] = {}

    def add(
        self, name: str, func: Callable[[], Any], *, seconds: float, lease_ttl: float,
        at_start: bool = False, release_after: bool = False,
    ) -> None:
        """Run ``func`` every ``seconds`` under the lease ``job-<name>``; ``at_start``: also
        as soon as the scheduler starts. The lease is kept between runs (one replica keeps
        the job) unless ``release_after``: then it covers a run only, so a process that
        restarts after a crash runs the job at once instead of waiting out the dead
        process's lease."""
        lease = Lease(self.state, f"job-{name}", ttl=lease_ttl)

        def run() -> None:
            try:
                if not lease.acquire():
                    return  # another replica holds it
                try:
                    func()
                finally:
                    if release_after:
                        lease.release()
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:  # a failing job must not kill the scheduler
                log.exception("job_failed", job=name)

        first = {"next_run_time": datetime.now(UTC)} if at_start else {}
        # misfire_grace_time=None: a run that is late (a loaded machine, a start-up slower
        # than a second after ``add``) still runs, instead of APScheduler's default of
        # skipping it when more than a second late (an at-start job then waited a period).
        self._scheduler.add_job(
            run, "interval", seconds=seconds, id=name, max_instances=1, coalesce=True,
            misfire_grace_time=None, **first,
        )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
