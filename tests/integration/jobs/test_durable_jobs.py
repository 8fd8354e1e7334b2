"""Durable jobs on real backends: claim exclusivity, resume after SIGKILL, failure after
the attempts, cancel, errors, scope, expiry and erasure of working-area artifacts."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.errors import ArchiverError, InvalidInput, NotFound
from archiver.jobs.durable import JobContext, JobLost, JobService
from archiver.jobs.model import Job, JobOwner, JobState, job_view
from archiver.jobs.scheduler import Jobs
from tests.integration.jobs.conftest import MakeSettings, service_for
from tests.support.apps import settings_env
from tests.support.job_worker import count

REPO = Path(__file__).resolve().parents[3]
ADMIN = JobOwner("tok-admin", "admin", None)


class Caller:
    def __init__(self, token_id: str, numbers: tuple[str, ...] | None) -> None:
        self.token_id, self.numbers = token_id, numbers

    def covers(self, numbers: Any) -> bool:
        if self.numbers is None:
            return True
        wanted = set(numbers or ())
        return bool(wanted) and wanted <= set(self.numbers)


def wait_state(service: JobService, job: Job, timeout: float = 30.0) -> Job:
    """Poll (as a restarted runner would) until the job is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.poll()
        current = service.get(job.kind, job.id)
        if current.state.terminal:
            service.run_until_idle(timeout=10)
            return service.get(job.kind, job.id)
        time.sleep(0.1)
    raise AssertionError(f"job still {service.get(job.kind, job.id).state}")


def test_two_runners_never_run_one_job_twice(make_settings: MakeSettings) -> None:
    settings = make_settings(jobs_concurrency=3)
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(ctx: JobContext) -> Mapping[str, Any]:
        with lock:
            runs[ctx.job.id] += 1
        time.sleep(0.2)  # long enough for the other runner's polls to see it running
        return {"by": ctx.job.runner}

    runners = [service_for(settings) for _ in range(2)]
    for r in runners:
        r.register("probe", handler)
    jobs = [runners[0].submit("probe", {"n": n}, ADMIN) for n in range(6)]
    threads = [threading.Thread(target=r.run_until_idle, kwargs={"timeout": 60}) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == Counter({j.id: 1 for j in jobs})
    finals = [runners[1].get("probe", j.id) for j in jobs]
    assert all(f.state is JobState.SUCCEEDED and f.attempts == 1 for f in finals)
    assert {f.result["by"] for f in finals} <= {r.runner_id for r in runners}


def _kill_mid_job(settings: Any, job: Job, at_step: int) -> str:
    """Run tests.support.job_worker until it prints ``step at_step``, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.job_worker"], cwd=REPO,
        env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            seen.append(line.strip())
            if line.startswith(f"step {at_step} "):
                proc.kill()  # SIGKILL: no cleanup, no last heartbeat
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9, (seen, proc.stderr.read() if proc.stderr else "")
    return seen[-1]


def test_job_resumes_from_checkpoint_after_sigkill(make_settings: MakeSettings) -> None:
    settings = make_settings()
    submitter = service_for(settings)
    submitter.register("count", count)
    job = submitter.submit("count", {"n": 40}, ADMIN)
    last = _kill_mid_job(settings, job, at_step=8)
    assert last == "step 8 attempt 1"
    orphan = submitter.get("count", job.id)
    assert orphan.state is JobState.RUNNING and orphan.checkpoint is not None
    assert int(orphan.checkpoint["i"]) >= 8

    restarted = service_for(settings)  # a new process start: picks the orphan up
    restarted.register("count", count)
    restarted.start()
    try:
        final = wait_state(restarted, job)
    finally:
        restarted.stop()
    assert final.state is JobState.SUCCEEDED, final.errors
    assert final.attempts == 2
    assert final.result["resumed_from"] >= 8  # not started over
    assert final.progress.done == 40 and final.progress.percent == 100.0
    artifact, early = final.result["artifacts"]  # sorted by name
    assert (artifact["name"], early["name"]) == ("count.txt", "early.txt")
    _, early_chunks = restarted.open_artifact(final, "early.txt")  # from attempt 1
    assert b"".join(early_chunks) == b"early"
    ref, chunks = restarted.open_artifact(final, "count.txt")
    body = b"".join(chunks)
    assert body == b"".join(f"{i}\n".encode() for i in range(40))
    assert ref.size == len(body) and artifact["sha256"] == ref.sha256


def test_orphan_out_of_attempts_fails_never_stays_running(make_settings: MakeSettings) -> None:
    settings = make_settings(jobs_max_attempts=1)
    submitter = service_for(settings)
    submitter.register("count", count)
    job = submitter.submit("count", {"n": 40}, ADMIN)
    _kill_mid_job(settings, job, at_step=3)
    other = service_for(settings)
    other.register("count", count)
    assert other.get("count", job.id).state is JobState.RUNNING  # not stale yet
    seen: list[JobState] = []
    other.start()  # a process start picks the orphan up
    try:
        final = other.wait("count", job.id, timeout=30, on_change=lambda j: seen.append(j.state))
    finally:
        other.stop()
    assert seen[0] is JobState.RUNNING and seen[-1] is JobState.FAILED
    assert final.state is JobState.FAILED
    assert final.attempts == 1
    assert final.errors[-1]["code"] == "job_abandoned"
    assert "attempt 1 of 1" in final.errors[-1]["message"]
    assert list(other.store.active("count")) == []  # no longer polled


def test_cancel_a_running_job(make_settings: MakeSettings) -> None:
    settings = make_settings()
    service = service_for(settings)
    started = threading.Event()

    def slow(ctx: JobContext) -> Mapping[str, Any]:
        started.set()
        for i in range(200):
            ctx.progress(i, 200)
            ctx.checkpoint({"i": i})  # reads the cancel flag back
            ctx.raise_if_cancelled()
            time.sleep(0.05)
        return {}

    service.register("slow", slow)
    job = service.submit("slow", {}, ADMIN)
    service.start()
    try:
        assert started.wait(20)
        assert service.cancel("slow", job.id).cancel_requested
        final = wait_state(service, job)
    finally:
        service.stop()
    assert final.state is JobState.CANCELLED
    assert final.progress.done < 199
    with pytest.raises(ArchiverError):  # a final job cannot be cancelled again
        service.cancel("slow", job.id)


def test_handler_errors_fail_the_job_with_their_code(make_settings: MakeSettings) -> None:
    service = service_for(make_settings())

    def bad(ctx: JobContext) -> Mapping[str, Any]:
        ctx.error("record_unreadable", "record r1 could not be read", record="r1")
        if ctx.params["how"] == "fat":
            ctx.checkpoint({"seen": ["x" * 100] * 5000})  # data, not a position
        if ctx.params["how"] == "domain":
            raise InvalidInput("the case has no scope", code="case_no_scope")
        raise RuntimeError("boom")

    service.register("bad", bad)
    domain = service.submit("bad", {"how": "domain"}, ADMIN)
    bug = service.submit("bad", {"how": "bug"}, ADMIN)
    fat = service.submit("bad", {"how": "fat"}, ADMIN)
    service.run_until_idle()
    f = service.get("bad", fat.id)
    assert f.state is JobState.FAILED and f.errors[-1]["code"] == "job_checkpoint_too_large"
    assert f.checkpoint is None
    d, b = service.get("bad", domain.id), service.get("bad", bug.id)
    assert d.state is JobState.FAILED and b.state is JobState.FAILED
    assert [e["code"] for e in d.errors] == ["record_unreadable", "case_no_scope"]
    assert b.errors[-1] == {"code": "job_internal", "message": "internal error (RuntimeError)"}
    assert "boom" not in str(job_view(b))  # an exception's text may quote content
    assert d.errors[0]["details"] == {"record": "r1"}


def test_scope_bad_input_and_listing(make_settings: MakeSettings) -> None:
    service = service_for(make_settings())
    service.register("export", lambda ctx: {})
    scoped = JobOwner("tok-a", "legal", ("111",))
    mine = service.submit("export", {}, scoped)
    everything = service.submit("export", {}, ADMIN)
    with pytest.raises(InvalidInput) as info:
        service.submit("export", {}, scoped, numbers=["222"])
    assert info.value.code == "job_scope"
    with pytest.raises(InvalidInput) as info:
        service.submit("nosuch", {}, ADMIN)
    assert info.value.code == "job_kind_unknown"
    with pytest.raises(InvalidInput) as info:
        service.submit("export", {"x": object()}, ADMIN)
    assert info.value.code == "job_params_invalid"
    with pytest.raises(InvalidInput) as info:
        service.submit("export", {"ids": ["r" * 60] * 2000}, ADMIN)
    assert info.value.code == "job_params_too_large"
    other_number = Caller("tok-c", ("222",))
    with pytest.raises(NotFound):
        service.get("export", mine.id, other_number)
    with pytest.raises(NotFound):
        service.get("export", "../../leases/x", None)
    assert service.get("export", mine.id, Caller("tok-b", ("111",))).id == mine.id
    assert [j.id for j in service.list("export", Caller("tok-b", ("111",)))] == [mine.id]
    assert [j.id for j in service.list("export", other_number)] == []
    assert {j.id for j in service.list("export", Caller("tok-z", None))} == {mine.id,
                                                                           everything.id}
    view = job_view(service.get("export", mine.id))
    assert view["state"] == "queued" and view["percent"] is None


def _finished_with_artifact(service: JobService, subjects: list[str]) -> Job:
    def make(ctx: JobContext) -> Mapping[str, Any]:
        ctx.write_artifact("a.bin", iter([b"x" * 1000]), subjects=subjects)
        return {}

    service.register("art", make)
    job = service.submit("art", {}, ADMIN)
    service.run_until_idle()
    return service.get("art", job.id)


def test_expiry_sweep_deletes_old_artifacts_only(make_settings: MakeSettings) -> None:
    service = service_for(make_settings(workarea_expiry_days=7))
    job = _finished_with_artifact(service, ["s1"])
    assert service.sweep_expired(datetime.now(UTC) + timedelta(days=6)) == 0
    ref, chunks = service.open_artifact(job, "a.bin")
    assert b"".join(chunks) == b"x" * 1000
    assert service.sweep_expired(datetime.now(UTC) + timedelta(days=7, seconds=5)) == 1
    job = service.get("art", job.id)
    assert job.result["artifacts"][0]["status"] == "expired"
    with pytest.raises(NotFound):
        service.open_artifact(job, "a.bin")
    assert service.workarea.stat(ref.key) is None
    assert list(service.workarea.list()) == []


def test_an_expired_artifact_is_not_downloadable_before_the_sweep(
    make_settings: MakeSettings,
) -> None:
    """The hourly sweep may not have run (or may not run at all: no scheduler): past the
    expiry the artifact still sits in the working area, but is no longer handed out."""
    service = service_for(make_settings(workarea_expiry_days=0.5 / 86400))  # half a second
    job = _finished_with_artifact(service, [])
    ref, chunks = service.open_artifact(job, "a.bin")
    assert b"".join(chunks) == b"x" * 1000
    time.sleep(0.6)
    with pytest.raises(NotFound) as err:
        service.open_artifact(service.get("art", job.id), "a.bin")
    assert err.value.code == "artifact_not_found"
    assert service.workarea.stat(ref.key) is not None  # not swept: only the age refused it


def test_expiry_sweep_runs_on_the_scheduler(make_settings: MakeSettings) -> None:
    settings = make_settings(workarea_expiry_days=0.5 / 86400)  # half a second
    service = service_for(settings)
    job = _finished_with_artifact(service, [])
    time.sleep(0.6)
    scheduler = Jobs(service.store.state)
    service.schedule(scheduler, every_s=3600)  # at_start: runs once right away
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while scheduler.runs.get("workarea-expiry", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.stop()
    assert scheduler.runs["workarea-expiry"] >= 1
    assert service.get("art", job.id).result["artifacts"][0]["status"] == "expired"


def test_erasure_drops_artifacts_holding_the_subject(make_settings: MakeSettings) -> None:
    service = service_for(make_settings())
    holding = _finished_with_artifact(service, ["subj-1", "subj-2"])
    other = _finished_with_artifact(service, ["subj-3"])
    dropped = service.drop_subject("subj-2")
    assert dropped == [holding.result["artifacts"][0]["key"]]
    assert service.get("art", holding.id).result["artifacts"][0]["status"] == "erased"
    with pytest.raises(NotFound):
        service.open_artifact(service.get("art", holding.id), "a.bin")
    _, chunks = service.open_artifact(service.get("art", other.id), "a.bin")
    assert b"".join(chunks) == b"x" * 1000
    assert service.drop_subject("subj-nobody") == []


def test_clean_shutdown_requeues_and_the_next_start_resumes_at_once(
        make_settings: MakeSettings) -> None:
    settings = make_settings(jobs_heartbeat_ttl_s=600)  # a takeover would wait 10 minutes
    first = service_for(settings)
    first.register("count", count)
    job = first.submit("count", {"n": 60}, ADMIN)
    first.start()
    deadline = time.monotonic() + 20
    while first.get("count", job.id).progress.done < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.stop()
    parked = first.get("count", job.id)
    assert parked.state is JobState.QUEUED and parked.attempts == 0
    assert parked.checkpoint is not None and int(parked.checkpoint["i"]) >= 3

    second = service_for(settings)
    second.register("count", count)
    final = wait_state(second, job, timeout=60)
    assert final.state is JobState.SUCCEEDED and final.attempts == 1
    assert final.result["resumed_from"] == int(parked.checkpoint["i"])


def test_a_stalled_runner_loses_the_job_and_cannot_overwrite_it(
        make_settings: MakeSettings) -> None:
    settings = make_settings()
    slow = service_for(settings, ttl=600.0)  # heart-beats every 150 s: looks dead at once
    fast = service_for(settings)  # TTL 1 s: takes the job over
    lost: list[str] = []
    stalled = threading.Event()

    def handler(ctx: JobContext) -> Mapping[str, Any]:
        if ctx.job.attempts == 1:
            stalled.set()
            time.sleep(2.5)  # a stall longer than the taker's TTL, without any write
            try:
                ctx.checkpoint({"late": True})
            except JobLost:
                lost.append(ctx.job.runner or "")
                raise
            return {"by": "stalled"}
        return {"by": "taker"}

    slow.register("stall", handler)
    fast.register("stall", handler)
    job = slow.submit("stall", {}, ADMIN)
    assert slow.poll() == 1 and stalled.wait(10)
    time.sleep(1.2)
    final = wait_state(fast, job)
    slow.run_until_idle(timeout=20)
    assert lost == [slow.runner_id]
    final = fast.get("stall", job.id)
    assert final.state is JobState.SUCCEEDED and final.attempts == 2
    assert final.result["by"] == "taker" and final.checkpoint != {"late": True}
