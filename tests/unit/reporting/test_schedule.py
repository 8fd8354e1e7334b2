"""Scheduled reports: the setting's grammar, the month covered, and exactly one job per
regulation and month however many ticks or replicas (working state on SQLite, real)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from archiver.errors import ConfigError
from archiver.jobs.durable import JobService
from archiver.jobs.scheduler import Jobs
from archiver.reporting.schedule import add_report_schedule, last_month, parse_schedule, submit_due
from archiver.store.state_sqlite import SqliteStateStore
from reports.facts import Regulation
from tests.support.apps import embedded_settings


def test_schedule_grammar() -> None:
    assert parse_schedule(" gdpr:monthly, finra:monthly ") == [
        (Regulation.GDPR, "monthly"), (Regulation.FINRA, "monthly")]
    assert parse_schedule("") == []
    for bad in ("sox:monthly", "gdpr:weekly", "gdpr"):
        with pytest.raises(ConfigError):
            parse_schedule(bad)


def test_last_finished_month() -> None:
    assert last_month(date(2026, 1, 15)) == (date(2025, 12, 1), date(2026, 1, 1))
    assert last_month(date(2026, 3, 1)) == (date(2026, 2, 1), date(2026, 3, 1))


def test_one_job_per_regulation_and_month(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path, report_schedule="gdpr:monthly,hipaa:monthly",
                                 report_lock_sample=500)
    state = SqliteStateStore(tmp_path / "state.sqlite3")
    replicas = [JobService.from_settings(settings, state) for _ in range(2)]
    for service in replicas:
        service.register("report", lambda ctx: {})
    now = datetime(2026, 5, 7, 3, 0, tzinfo=UTC)
    made = submit_due(replicas[0], parse_schedule(settings.report_schedule), 500, now)
    assert len(made) == 2
    # Later ticks, on either replica, submit nothing more for the same month.
    for service in (*replicas, replicas[0]):
        assert submit_due(service, parse_schedule(settings.report_schedule), 500, now) == []
    jobs = replicas[0].list("report")
    assert len(jobs) == 2
    assert {j.params["regulation"] for j in jobs} == {"gdpr", "hipaa"}
    assert {(j.params["start"], j.params["end"]) for j in jobs} == {("2026-04-01", "2026-05-01")}
    assert all(j.params["sample_size"] == 500 for j in jobs)
    # The next month is due once the month has turned.
    june = datetime(2026, 6, 1, 0, 5, tzinfo=UTC)
    assert len(submit_due(replicas[1], parse_schedule(settings.report_schedule), 500, june)) == 2


def test_schedule_added_under_the_job_lease_only_when_set(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.sqlite3")
    on = embedded_settings(tmp_path, report_schedule="finra:monthly")
    service = JobService.from_settings(on, state)
    jobs = Jobs(state)
    assert add_report_schedule(jobs, service, on)
    assert jobs._scheduler.get_job("report-schedule") is not None
    off = embedded_settings(tmp_path)
    assert not add_report_schedule(Jobs(state), service, off)


@pytest.mark.parametrize("bad", ["gdpr:weekly", "sox:monthly", "gdpr", "GDPR:monthly",
                                 "gdpr:monthly,hipaa"])
def test_bad_schedule_is_a_settings_error(tmp_path: Path, bad: str) -> None:
    # A typo is refused with the other settings (a clear config_invalid before serving),
    # not as a traceback from the scheduler once the app starts.
    with pytest.raises(ConfigError) as err:
        embedded_settings(tmp_path, report_schedule=bad)
    assert "report_schedule" in str(err.value)


def test_settings_know_the_same_regulations_and_cadences(tmp_path: Path) -> None:
    from archiver.reporting.schedule import CADENCES
    from archiver.settings import REPORT_REGULATIONS

    assert set(REPORT_REGULATIONS) == {r.value for r in Regulation}
    assert set(CADENCES) == {"monthly"}
    ok = ",".join(f"{r.value}:monthly" for r in Regulation)
    assert embedded_settings(tmp_path, report_schedule=ok).report_schedule == ok
