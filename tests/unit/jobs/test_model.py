"""The durable job state machine (archiver.jobs.model): pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from archiver.errors import InvalidInput
from archiver.jobs.model import (
    MAX_ERRORS,
    InvalidTransition,
    Job,
    JobOwner,
    JobState,
    Progress,
    job_view,
    new_job,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB_ID = "A" * 24
ADMIN = JobOwner("tok-admin", "admin", None)
SCOPED = JobOwner("tok-a", "legal", ("111",))


@dataclass
class Caller:
    token_id: str
    numbers: tuple[str, ...] | None

    def covers(self, numbers: object) -> bool:
        if self.numbers is None:
            return True
        wanted = set(numbers or ())  # type: ignore[call-overload]  # an iterable or None
        return bool(wanted) and wanted <= set(self.numbers)


def queued(owner: JobOwner = ADMIN, **kw: object) -> Job:
    return new_job(JOB_ID, "export", {"case": "c1"}, owner, numbers=kw.get("numbers"),  # type: ignore[arg-type]
                   now=T0, max_attempts=int(kw.get("max_attempts", 2)))  # type: ignore[call-overload]


def test_happy_path_queued_running_succeeded() -> None:
    job = queued()
    assert job.state is JobState.QUEUED and job.attempts == 0
    running = job.claim("r1", T0 + timedelta(seconds=1))
    assert running.state is JobState.RUNNING and running.attempts == 1
    assert running.runner == "r1" and running.started_at == T0 + timedelta(seconds=1)
    running = running.with_progress("r1", Progress(5, 10, {"records": 5}))
    assert running.progress.percent == 50.0
    done = running.finish(JobState.SUCCEEDED, T0 + timedelta(seconds=9), {"n": 1})
    assert done.state is JobState.SUCCEEDED and done.runner is None
    assert done.finished_at == T0 + timedelta(seconds=9) and done.result == {"n": 1}


@pytest.mark.parametrize("final", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_terminal_states_never_move_again(final: JobState) -> None:
    done = queued().claim("r1", T0).finish(final, T0)
    for move in (lambda j: j.claim("r2", T0), lambda j: j.cancel(T0),
                 lambda j: j.finish(JobState.SUCCEEDED, T0),
                 lambda j: j.reclaim("r2", T0 + timedelta(days=1), 1.0),
                 lambda j: j.beat("r1", T0)):
        with pytest.raises(InvalidTransition):
            move(done)


def test_running_job_cannot_be_claimed_twice() -> None:
    running = queued().claim("r1", T0)
    with pytest.raises(InvalidTransition):
        running.claim("r2", T0)


def test_queued_job_cannot_succeed_without_running() -> None:
    with pytest.raises(InvalidTransition):
        queued().finish(JobState.SUCCEEDED, T0)


def test_only_the_holder_heartbeats_or_checkpoints() -> None:
    running = queued().claim("r1", T0)
    with pytest.raises(InvalidTransition) as info:
        running.beat("r2", T0)
    assert info.value.code == "job_lost"
    with pytest.raises(InvalidTransition):
        running.with_checkpoint("r2", {"at": 3})
    assert running.with_checkpoint("r1", {"at": 3}).checkpoint == {"at": 3}


def test_stale_job_is_taken_over_with_its_checkpoint() -> None:
    running = queued(max_attempts=2).claim("r1", T0).with_checkpoint("r1", {"at": 7})
    assert not running.is_stale(T0 + timedelta(seconds=5), 10.0)
    with pytest.raises(InvalidTransition):  # alive: never stolen
        running.reclaim("r2", T0 + timedelta(seconds=5), 10.0)
    taken = running.reclaim("r2", T0 + timedelta(seconds=11), 10.0)
    assert taken.state is JobState.RUNNING and taken.runner == "r2" and taken.attempts == 2
    assert taken.checkpoint == {"at": 7}
    # the dead runner's late writes are refused
    with pytest.raises(InvalidTransition):
        taken.beat("r1", T0 + timedelta(seconds=12))


def test_stale_job_out_of_attempts_fails_with_a_clear_error() -> None:
    running = queued(max_attempts=1).claim("r1", T0)
    failed = running.reclaim("r2", T0 + timedelta(seconds=61), 60.0)
    assert failed.state is JobState.FAILED and failed.finished_at is not None
    assert failed.errors[-1]["code"] == "job_abandoned"
    assert "attempt 1 of 1" in failed.errors[-1]["message"]


def test_cancel_queued_at_once_running_by_flag() -> None:
    assert queued().cancel(T0).state is JobState.CANCELLED
    flagged = queued().claim("r1", T0).cancel(T0)
    assert flagged.state is JobState.RUNNING and flagged.cancel_requested
    # a flagged job whose runner died ends cancelled, not retried
    assert flagged.reclaim("r2", T0 + timedelta(hours=1), 60).state is JobState.CANCELLED


def test_errors_are_capped() -> None:
    job = queued()
    for n in range(MAX_ERRORS + 5):
        job = job.add_error("record_unreadable", f"record {n}")
    assert len(job.errors) == MAX_ERRORS and job.errors_dropped == 5


def test_json_round_trip_is_exact() -> None:
    job = (queued(SCOPED).claim("r1", T0).with_progress("r1", Progress(1, 3, {"a": 1}))
           .with_checkpoint("r1", {"k": [1, 2]}).add_error("x", "y", record="r"))
    assert Job.from_json(job.to_json()) == job


def test_bad_kind_id_and_scope_are_refused() -> None:
    with pytest.raises(InvalidInput):
        new_job(JOB_ID, "Export!", {}, ADMIN, numbers=None, now=T0, max_attempts=1)
    with pytest.raises(InvalidInput):
        new_job("../x", "export", {}, ADMIN, numbers=None, now=T0, max_attempts=1)
    with pytest.raises(InvalidInput) as info:  # a scoped token over another number
        new_job(JOB_ID, "export", {}, SCOPED, numbers=["222"], now=T0, max_attempts=1)
    assert info.value.code == "job_scope"
    with pytest.raises(InvalidInput):  # nor over "no particular number"
        new_job(JOB_ID, "export", {}, SCOPED, numbers=[], now=T0, max_attempts=1)
    # default: the owner's scope
    assert new_job(JOB_ID, "export", {}, SCOPED, numbers=None, now=T0,
                   max_attempts=1).numbers == ("111",)


def test_visibility_follows_number_scope() -> None:
    job = queued(SCOPED)
    assert job.visible_to(Caller("tok-a", ("111",)))  # the submitter
    assert job.visible_to(Caller("tok-b", ("111", "222")))  # covers 111
    assert job.visible_to(Caller("tok-admin", None))  # unscoped
    assert not job.visible_to(Caller("tok-c", ("222",)))  # another number
    everything = queued(ADMIN)  # about every number: unscoped callers only
    assert not everything.visible_to(Caller("tok-b", ("111", "222")))


def test_view_hides_checkpoint_runner_and_subjects() -> None:
    job = queued().claim("r1", T0).with_checkpoint("r1", {"secret": 1})
    job = job.finish(JobState.SUCCEEDED, T0, {"artifacts": [{"name": "p.zip", "subjects": ["s"]}]})
    view = job_view(job)
    assert view["state"] == "succeeded" and view["result"]["artifacts"] == [{"name": "p.zip"}]
    assert "checkpoint" not in view and "runner" not in view
    assert "secret" not in str(view) and "'s'" not in str(view)
    assert view["finished_at"] == T0.isoformat()


def test_release_gives_the_attempt_back_and_keeps_the_checkpoint() -> None:
    running = queued().claim("r1", T0).with_checkpoint("r1", {"i": 4})
    released = running.release("r1")
    assert released.state is JobState.QUEUED and released.attempts == 0
    assert released.runner is None and released.checkpoint == {"i": 4}
    with pytest.raises(InvalidTransition):
        running.release("r2")  # only the holder
    with pytest.raises(InvalidTransition):
        running.cancel(T0).release("r1")  # a cancelled job is not put back


def test_real_principals_fit_owner_and_visibility() -> None:
    from archiver.auth import Principal, Role

    legal = Principal("tok-l", "legal one", Role.LEGAL, ("111",), None)
    other = Principal("tok-o", "other", Role.LEGAL, ("222",), None)
    admin = Principal("tok-a", "admin", Role.ADMIN, None, None)
    owner = JobOwner.of(legal)
    assert owner == JobOwner("tok-l", "legal", ("111",))
    job = new_job(JOB_ID, "export", {}, owner, numbers=None, now=T0, max_attempts=1)
    assert job.visible_to(legal) and job.visible_to(admin)
    assert not job.visible_to(other)
    assert JobOwner.of(admin).numbers is None
