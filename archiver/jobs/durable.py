"""Durable, restartable jobs shared by exports and reports (docs/jobs.md).

``JobService`` is the one object callers use::

    service = JobService.from_settings(settings, state)       # or JobService(state, area, …)
    service.register("export", run_export)                     # handler(ctx) -> result dict
    job = service.submit("export", {"case": "c1"}, JobOwner.of(principal))
    service.start()                                            # background runner threads
    service.schedule(runtime.jobs)                             # the working-area expiry sweep

State lives in working state, one document per job at ``jobs/<kind>/<id>``, changed only
by compare-and-swap, so a job is run by one runner (thread, process or replica) at a time.
A marker ``jobs-active/<kind>/<id>`` exists while the job is not finished, so runners poll
only live jobs. A running job's runner heart-beats every ``ttl/4``; a job whose heartbeat
is older than ``ttl`` is presumed orphaned (its process died) and the next poll of any
runner takes it over from its last checkpoint, or fails it once ``max_attempts`` attempts
were used. A job is therefore never left "running" forever.

The store and the handler's context are in ``archiver.jobs.context`` (re-exported here).
A handler gets a ``JobContext``: ``progress``, ``checkpoint`` / ``resume_state``,
``is_cancelled``, ``write_artifact`` and ``error``. It returns a JSON-able result dict;
its artifacts are added to it as ``result["artifacts"]``. An ``ArchiverError`` raised by a
handler fails the job with its code; any other exception fails it as ``job_internal``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from archiver.errors import ArchiverError, InvalidInput, NotFound
from archiver.jobs.context import (
    Handler,
    JobCancelled,
    JobContext,
    JobInterrupted,
    JobLost,
    JobStore,
)
from archiver.jobs.model import (
    ID_RE,
    KIND_RE,
    InvalidTransition,
    Job,
    JobOwner,
    JobState,
    ScopeHolder,
    job_view,
    new_job,
)
from archiver.jobs.spool import Spool
from archiver.jobs.workarea import ArtifactRef, WorkArea
from archiver.keyspace import active_job_key
from archiver.logs import get_logger
from archiver.store.errors import StoreError
from archiver.store.port import StateStore

if TYPE_CHECKING:
    from archiver.jobs.scheduler import Jobs
    from archiver.settings import Settings

log = get_logger("archiver.jobs.durable")

EXPIRY_SWEEP_INTERVAL_S = 3600.0
MAX_PARAMS_BYTES = 64 * 1024
__all__ = [
    "Handler", "JobCancelled", "JobContext", "JobInterrupted",
    "JobLost", "JobOwner", "JobService", "JobState", "JobStore", "job_view",
]


def _now() -> datetime:
    return datetime.now(UTC)


class JobService:
    """Submit, read, cancel and run durable jobs; owns the working area's sweeps."""

    def __init__(
        self,
        state: StateStore,
        workarea: WorkArea,
        *,
        concurrency: int = 2,
        heartbeat_ttl_s: float = 60.0,
        max_attempts: int = 3,
        expiry_days: float = 7.0,
        poll_interval_s: float = 2.0,
        runner_id: str | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.store = JobStore(state)
        self.workarea = workarea
        self.spool = spool  # where attempts put scratch files (a dead process's are swept)
        self.concurrency = concurrency
        self.ttl = heartbeat_ttl_s
        self.max_attempts = max_attempts
        self.expiry = timedelta(days=expiry_days)
        self.poll_interval = poll_interval_s
        self.runner_id = runner_id or secrets.token_hex(8)
        self._handlers: dict[str, Handler] = {}
        self._orphan_final: dict[str, Callable[[Job], None]] = {}
        self._slots = threading.BoundedSemaphore(concurrency)
        self._running: dict[str, threading.Thread] = {}
        self._contexts: dict[str, JobContext] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poller: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, state: StateStore) -> JobService:
        from archiver.jobs.setup import open_workarea  # local: keeps minio out of imports

        area = open_workarea(settings)
        area.ensure()
        return cls(state, area, concurrency=settings.jobs_concurrency,
                   heartbeat_ttl_s=settings.jobs_heartbeat_ttl_s,
                   max_attempts=settings.jobs_max_attempts,
                   expiry_days=settings.workarea_expiry_days,
                   spool=Spool(settings.spool_dir or settings.data_dir / "spool"))

    # -- callers (routes, CLI) -------------------------------------------------------

    def register(self, kind: str, handler: Handler, *,
                 on_orphan_final: Callable[[Job], None] | None = None) -> None:
        """``on_orphan_final``: called with a job the runner finished without its handler
        (a dead runner's job failed ``job_abandoned`` after its last attempt, or
        cancelled): the handler never saw that end, and its trail (a case's chain of
        custody) must still record it."""
        if not KIND_RE.match(kind):
            raise InvalidInput(f"invalid job kind {kind!r}", code="job_kind_invalid")
        self._handlers[kind] = handler
        if on_orphan_final is not None:
            self._orphan_final[kind] = on_orphan_final
        else:
            self._orphan_final.pop(kind, None)

    def _ended_orphan(self, kind: str, job: Job) -> None:
        hook = self._orphan_final.get(kind)
        if hook is None:
            return
        try:
            hook(job)
        except Exception:  # the job's end stands; the trail gap is logged
            log.exception("job_orphan_final_failed", kind=kind, job_id=job.id)

    def handles(self, kind: str) -> bool:
        return kind in self._handlers

    def submit(self, kind: str, params: Mapping[str, Any], owner: JobOwner, *,
               numbers: Iterable[str] | None = None) -> Job:
        """Queue a job. ``params`` must be JSON-able; ``numbers``: what it concerns (within
        the owner's scope; default the owner's scope). Raises InvalidInput."""
        if kind not in self._handlers:
            raise InvalidInput(f"no handler for job kind {kind!r}", code="job_kind_unknown")
        try:
            size = len(json.dumps(params))
        except (TypeError, ValueError) as exc:
            raise InvalidInput("job parameters are not JSON", code="job_params_invalid") from exc
        if size > MAX_PARAMS_BYTES:  # every poll and heartbeat rewrites the document
            raise InvalidInput(f"job parameters exceed {MAX_PARAMS_BYTES} bytes",
                             code="job_params_too_large")
        job = new_job(secrets.token_urlsafe(18), kind, params, owner, numbers=numbers,
                      now=_now(), max_attempts=self.max_attempts)
        self.store.create(job)
        self._wake.set()
        return job

    def get(self, kind: str, job_id: str, caller: ScopeHolder | None = None) -> Job:
        """The job, if ``caller`` (when given) may see it. NotFound otherwise: a job of
        another scope is indistinguishable from a missing one."""
        found = self.store.read(kind, job_id)
        if found is None or (caller is not None and not found[0].visible_to(caller)):
            raise NotFound("no such job", code="job_not_found")
        return found[0]

    def list(self, kind: str, caller: ScopeHolder | None = None, *,
             state: JobState | None = None) -> builtins.list[Job]:
        """Jobs of ``kind`` that ``caller`` may see, newest first."""
        jobs = [j for j in self.store.all(kind)
                if (caller is None or j.visible_to(caller)) and (state is None or j.state is state)]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def cancel(self, kind: str, job_id: str, caller: ScopeHolder | None = None) -> Job:
        self.get(kind, job_id, caller)
        return self.store.update(kind, job_id, lambda j: j.cancel(_now()))

    def wait(self, kind: str, job_id: str, *, timeout: float | None = None,
             on_change: Callable[[Job], None] | None = None, every_s: float = 0.5) -> Job:
        """Block until the job is final (whichever runner runs it), calling ``on_change``
        with each new version (a CLI progress bar). TimeoutError after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        while True:
            job = self.get(kind, job_id)
            if job != last and on_change is not None:
                on_change(job)
            last = job
            if job.state.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state}")
            self._wake.set()  # our own runner, if started, polls now
            time.sleep(every_s)

    def open_artifact(self, job: Job, name: str) -> tuple[ArtifactRef, Iterator[bytes]]:
        """A finished job's artifact for download: its ref and a chunk stream. NotFound
        when the job did not succeed or the artifact expired or was erased. Expired means
        older than the expiry, whether or not the hourly sweep has deleted it yet (or the
        sweep runs at all): the expiry is a promise about downloads, not about the sweep."""
        if job.state is not JobState.SUCCEEDED:
            raise NotFound("the job has no artifacts", code="artifact_not_found")
        for entry in job.result.get("artifacts") or []:
            if entry.get("name") == name and entry.get("status", "available") == "available":
                ref = self.workarea.stat(entry["key"])
                if ref is not None and ref.created_at < _now() - self.expiry:
                    raise NotFound("the artifact expired", code="artifact_not_found")
                if ref is not None:
                    return ref, self.workarea.read(ref.key)
        raise NotFound("no such artifact (expired or erased?)", code="artifact_not_found")

    # -- the runner ------------------------------------------------------------------

    def start(self) -> None:
        """Poll for work in a background thread (stale jobs are picked up at once)."""
        if self.spool is not None:  # a killed process's scratch files (decrypted content)
            self.spool.sweep()
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll_loop, name="jobs-runner", daemon=True)
        self._poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling, ask running handlers to stop (``is_cancelled`` turns true; a
        handler that raises ``JobInterrupted`` puts its job back in the queue) and wait for
        them; one still running after ``timeout`` is taken over after the heartbeat TTL."""
        self._stop.set()
        self._wake.set()
        with self._guard:
            for ctx in self._contexts.values():
                ctx.interrupted.set()
        if self._poller is not None:
            self._poller.join(timeout)
        for thread in list(self._running.values()):
            thread.join(timeout)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a store outage must not end the runner
                log.exception("jobs_poll_failed")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def poll(self) -> int:
        """One pass: fail or take over orphaned jobs, claim queued ones while slots are
        free. Returns how many it started (each in its own thread)."""
        started = 0
        for kind in sorted(self._handlers):
            for job_id in self.store.active(kind):
                if self._stop.is_set():
                    return started
                with self._guard:
                    if job_id in self._running:
                        continue
                if not self._slots.acquire(blocking=False):
                    self._abandon_only(kind, job_id)
                    continue
                job = self._try_claim(kind, job_id)
                if job is None:
                    self._slots.release()
                    continue
                self._launch(job)
                started += 1
        return started

    def _try_claim(self, kind: str, job_id: str) -> Job | None:
        now = _now()

        def change(job: Job) -> Job:
            if job.state is JobState.QUEUED:
                return job.claim(self.runner_id, now)
            if job.is_stale(now, self.ttl):
                return job.reclaim(self.runner_id, now, self.ttl)
            return job  # running elsewhere, alive: leave it

        try:
            job = self.store.update(kind, job_id, change)
        except NotFound:
            self._drop_orphan_marker(kind, job_id)
            return None
        except StoreError:
            log.warning("jobs_claim_failed", kind=kind, job_id=job_id)
            return None
        if job.state.terminal:
            self.store.drop_marker(kind, job_id)
            if job.finished_at == now:  # ended just now, by this reclaim
                log.warning("job_abandoned", kind=kind, job_id=job_id, attempts=job.attempts)
                self._ended_orphan(kind, job)
            return None
        if job.runner != self.runner_id or job.heartbeat_at != now:
            return None  # someone else's, alive
        return job

    def _abandon_only(self, kind: str, job_id: str) -> None:
        """No free slot: still fail (never take over) orphans whose attempts are used up."""
        now = _now()

        def change(job: Job) -> Job:
            if (job.is_stale(now, self.ttl) and
                    (job.attempts >= job.max_attempts or job.cancel_requested)):
                return job.reclaim(self.runner_id, now, self.ttl)
            return job

        with contextlib.suppress(NotFound, StoreError):
            job = self.store.update(kind, job_id, change)
            if job.state.terminal:
                self.store.drop_marker(kind, job_id)
                if job.finished_at == now:  # ended just now, by this reclaim
                    self._ended_orphan(kind, job)

    def _drop_orphan_marker(self, kind: str, job_id: str) -> None:
        """A marker without a job: a submit died between its two writes (after an hour)."""
        current = self.store.state.get(active_job_key(kind, job_id))
        if current is not None:
            created = datetime.fromisoformat(json.loads(current.value)["created_at"])
            if _now() - created > timedelta(hours=1):
                self.store.drop_marker(kind, job_id)

    def _launch(self, job: Job) -> None:
        thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                  name=f"job-{job.kind}-{job.id[:6]}")
        with self._guard:
            self._running[job.id] = thread
        thread.start()

    def _run(self, job: Job) -> None:
        ctx = JobContext(self.store, self.workarea, job, self.runner_id)
        with self._guard:
            self._contexts[job.id] = ctx
            if self._stop.is_set():
                ctx.interrupted.set()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(ctx, done), daemon=True)
        beat.start()
        try:
            self._execute(ctx)
        finally:
            done.set()
            beat.join()
            with self._guard:
                self._running.pop(job.id, None)
                self._contexts.pop(job.id, None)
            self._slots.release()
            self._wake.set()

    def _heartbeat(self, ctx: JobContext, done: threading.Event) -> None:
        while not done.wait(self.ttl / 4):
            try:
                ctx.flush()
            except JobLost:
                return
            except Exception:  # the store is down: the next beat may get through
                log.warning("job_heartbeat_failed", job_id=ctx.job.id)

    def _execute(self, ctx: JobContext) -> None:
        job = ctx.job
        log.info("job_started", kind=job.kind, job_id=job.id, attempt=job.attempts)
        outcome: JobState
        result: dict[str, Any] = {}
        error: tuple[str, str] | None = None
        try:
            returned = self._handlers[job.kind](ctx)
            result = dict(returned or {})
            outcome = JobState.SUCCEEDED
        except JobLost:
            log.warning("job_lost", kind=job.kind, job_id=job.id)
            return
        except JobInterrupted:
            with contextlib.suppress(InvalidTransition, NotFound):
                self.store.update(job.kind, job.id,
                                  lambda j: ctx._apply(j, lambda x: x).release(self.runner_id))
                log.info("job_released", kind=job.kind, job_id=job.id)
            return
        except JobCancelled:
            outcome = JobState.CANCELLED
        except ArchiverError as exc:
            outcome, error = JobState.FAILED, (exc.code, exc.message)
        except Exception as exc:
            log.exception("job_handler_error", kind=job.kind, job_id=job.id)
            # The type only: a message may quote content, and the view shows errors to users
            # (the traceback is in the log).
            outcome, error = JobState.FAILED, ("job_internal",
                                               f"internal error ({type(exc).__name__})")
        result["artifacts"] = [
            {"name": name, "status": "available", **{k: v for k, v in ref.to_json().items()
                                                     if k != "subjects"}}
            for name, ref in sorted(ctx.artifacts.items())
        ]
        self._finish(ctx, outcome, result, error)

    def _finish(self, ctx: JobContext, outcome: JobState, result: dict[str, Any],
                error: tuple[str, str] | None) -> None:
        now = _now()

        def change(j: Job) -> Job:
            j = ctx._apply(j.beat(self.runner_id, now), lambda x: x)
            if error is not None:
                j = j.add_error(*error)
            return j.finish(outcome, now, result)

        try:
            final = self.store.update(ctx.job.kind, ctx.job.id, change)
        except InvalidTransition:
            log.warning("job_lost", kind=ctx.job.kind, job_id=ctx.job.id)
            return
        log.info("job_finished", kind=final.kind, job_id=final.id, state=str(final.state))

    def run_until_idle(self, timeout: float = 60.0) -> None:
        """Poll and wait until no job of ours is running (tests, CLI one-shots)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.poll()
            with self._guard:
                threads = list(self._running.values())
            if not started and not threads:
                return
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        raise TimeoutError("jobs still running")

    # -- working area: expiry and erasure ----------------------------------------------

    def schedule(self, jobs: Jobs, *, every_s: float = EXPIRY_SWEEP_INTERVAL_S) -> None:
        """Register the expiry sweep on the singleton scheduler (one replica runs it)."""
        jobs.add("workarea-expiry", self.sweep_expired, seconds=every_s,
                 lease_ttl=max(60.0, every_s / 2), at_start=True)

    def sweep_expired(self, now: datetime | None = None) -> int:
        """Delete artifacts older than the expiry; mark them ``expired`` on their job."""
        cutoff = (now or _now()) - self.expiry
        removed = [ref.key for ref in list(self.workarea.list()) if ref.created_at < cutoff]
        for key in removed:
            self.workarea.delete(key)
            self._mark(key, "expired")
        sweep_partial = getattr(self.workarea, "sweep_partial", None)
        if callable(sweep_partial):
            sweep_partial()
        if removed:
            log.info("workarea_expired", count=len(removed))
        return len(removed)

    def drop_subject(self, subject: str) -> builtins.list[str]:
        """Erasure hook: delete every artifact holding ``subject``'s content (as named in
        ``write_artifact(subjects=…)``) and mark it ``erased`` on its job. Returns keys.
        Dead processes' scratch files go too: they may hold the subject's plaintext and
        name no one (a live attempt's are checked by the export itself)."""
        if self.spool is not None:
            self.spool.sweep()
        hits = [ref.key for ref in list(self.workarea.list()) if subject in ref.subjects]
        for key in hits:
            self.workarea.delete(key)
            self._mark(key, "erased")
        return hits

    def redact(self, kind: str, matches: Callable[[Job], bool],
               params: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> builtins.list[str]:
        """Erasure hook: every job of ``kind`` whose parameters name an erased data subject
        (``matches``) gets ``params(old)`` instead, loses its error messages and, unless
        finished, is cancelled (``Job.redacted``). Returns the job ids."""
        done: builtins.list[str] = []
        for job in list(self.store.all(kind)):
            if not matches(job):
                continue
            with contextlib.suppress(NotFound):  # removed meanwhile
                self.store.update(kind, job.id,
                                  lambda j: j.redacted(params(j.params), _now()) if matches(j)
                                  else j)  # fmt: skip
                done.append(job.id)
        if done:
            log.info("jobs_redacted", kind=kind, count=len(done))
        return done

    def _mark(self, key: str, status: str) -> None:
        parts = key.split("/")
        if len(parts) < 3 or not (KIND_RE.match(parts[0]) and ID_RE.match(parts[1])):
            return  # not a job artifact

        def change(job: Job) -> Job:
            artifacts = [dict(a, status=status) if a.get("key") == key else dict(a)
                         for a in job.result.get("artifacts") or []]
            return job.with_result({**job.result, "artifacts": artifacts})

        with contextlib.suppress(NotFound):
            self.store.update(parts[0], parts[1], change)
