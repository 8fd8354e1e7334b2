"""Scheduled reports (``ARCHIVER_REPORT_SCHEDULE``, e.g. ``gdpr:monthly,finra:monthly``).

``add_report_schedule(jobs, job_service, settings)`` adds one singleton job to the
APScheduler ``Jobs`` (under its lease, so one replica runs it). Every hour it makes sure
each scheduled regulation has a report job for the last finished month: a marker
``reports-scheduled/<regulation>/<YYYY-MM>`` in working state is created once, by
compare-and-swap (``if_absent``), *before* the job is submitted, so two replicas or two
ticks never submit the same month twice. A lost submit after the marker leaves a marker
naming no job; the next tick finds it and submits. Each run reads the lock of a seeded
sample of ``ARCHIVER_REPORT_LOCK_SAMPLE`` objects (0: all).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from archiver.errors import ConfigError
from archiver.jobs.durable import JobOwner, JobService
from archiver.keyspace import scheduled_report_key
from archiver.reporting.service import KIND
from archiver.store.errors import PreconditionFailed
from reports.facts import Regulation

if TYPE_CHECKING:
    from archiver.jobs.scheduler import Jobs
    from archiver.settings import Settings

CHECK_INTERVAL_S = 3600.0
SYSTEM_OWNER = JobOwner("system", "admin", None)
CADENCES = frozenset({"monthly"})


def parse_schedule(text: str) -> list[tuple[Regulation, str]]:
    """``gdpr:monthly,finra:monthly`` → [(GDPR, "monthly"), …]; ConfigError otherwise."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        reg, _, cadence = part.partition(":")
        try:
            regulation = Regulation(reg.strip())
        except ValueError:
            raise ConfigError(f"ARCHIVER_REPORT_SCHEDULE: unknown regulation {reg!r}") from None
        if cadence.strip() not in CADENCES:
            raise ConfigError(f"ARCHIVER_REPORT_SCHEDULE: cadence of {reg!r} must be one of "
                              f"{sorted(CADENCES)}")
        out.append((regulation, cadence.strip()))
    return out


def last_month(today: date) -> tuple[date, date]:
    first = today.replace(day=1)
    prev = date(first.year - 1, 12, 1) if first.month == 1 else first.replace(
        month=first.month - 1)
    return prev, first


def submit_due(service: JobService, schedule: list[tuple[Regulation, str]], sample: int,
               now: datetime) -> list[str]:
    """Submit the report of the last finished month for each scheduled regulation that has
    none yet; return the new job ids."""
    start, end = last_month(now.astimezone(UTC).date())
    made = []
    for regulation, _cadence in schedule:
        key = scheduled_report_key(regulation.value, f"{start:%Y-%m}")
        current = service.store.state.get(key)
        if current is not None and json.loads(current.value).get("job"):
            continue
        if current is None:
            try:
                service.store.state.put(key, json.dumps({"job": None}).encode(), if_absent=True)
            except PreconditionFailed:
                continue  # another replica claimed this month just now
            current = service.store.state.get(key)
            if current is None:
                continue
        params: dict[str, object] = {"regulation": regulation.value, "start": start.isoformat(),
                  "end": end.isoformat(), "numbers": [],
                  "sample_size": sample or None}
        job = service.submit(KIND, params, SYSTEM_OWNER)
        try:
            service.store.state.put(key, json.dumps({"job": job.id}).encode(),
                                    if_match=current.token)
        except PreconditionFailed:
            service.cancel(KIND, job.id)  # someone else submitted it meanwhile
            continue
        made.append(job.id)
    return made


def add_report_schedule(jobs: Jobs, service: JobService, settings: Settings) -> bool:
    """Add the hourly check when a schedule is set; False when none is."""
    schedule = parse_schedule(settings.report_schedule)
    if not schedule:
        return False
    jobs.add("report-schedule",
             lambda: submit_due(service, schedule, settings.report_lock_sample,
                                datetime.now(UTC)),
             seconds=CHECK_INTERVAL_S, lease_ttl=CHECK_INTERVAL_S, at_start=True)
    return True
