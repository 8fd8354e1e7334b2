"""Singleton jobs on a schedule (APScheduler), each under a lease so that with several
replicas only one runs it at a time: checkpoint signing (every
``ARCHIVER_CHECKPOINT_INTERVAL_S``) and the daily sampled verify sweep. Other packages
add theirs with ``Jobs.add``."""

from __future__ import annotations

from collections.abc import Callable
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

    def add(self, name: str, func: Callable[[], Any], *, seconds: float, lease_ttl: float) -> None:
        lease = Lease(self.state, f"job-{name}", ttl=lease_ttl)

        def run() -> None:
            try:
                if not lease.acquire():
                    return  # another replica holds it
                func()
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:  # a failing job must not kill the scheduler
                log.exception("job_failed", job=name)

        self._scheduler.add_job(
            run, "interval", seconds=seconds, id=name, max_instances=1, coalesce=True
        )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
