"""The job store (documents in working state, CAS only) and what a handler sees of its
job (``JobContext``). Used through ``archiver.jobs.durable.JobService``; docs/jobs.md."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from archiver.errors import ArchiverError, NotFound
from archiver.jobs.model import ID_RE, KIND_RE, InvalidTransition, Job, Progress
from archiver.jobs.workarea import ArtifactRef, Chunks, WorkArea, check_key
from archiver.keyspace import active_job_key, active_jobs_of, job_key, jobs_of
from archiver.store.errors import PreconditionFailed, StoreError
from archiver.store.port import StateStore

MAX_CHECKPOINT_BYTES = 256 * 1024  # rewritten with every heartbeat: a position, not data


def _now() -> datetime:
    return datetime.now(UTC)


class JobCancelled(ArchiverError):
    """Raised by ``JobContext.raise_if_cancelled``; the job ends as cancelled."""

    code = "job_cancelled"


class CheckpointTooLarge(ArchiverError):
    code = "job_checkpoint_too_large"


class JobLost(ArchiverError):
    """This runner no longer holds the job (it was presumed dead and taken over)."""

    code = "job_lost"


class JobInterrupted(ArchiverError):
    """The process is shutting down: the job goes back to the queue, to be resumed."""

    code = "job_interrupted"


Handler = Callable[["JobContext"], Mapping[str, Any] | None]


class JobStore:
    """Job documents in working state, changed by compare-and-swap only."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    @staticmethod
    def key(kind: str, job_id: str) -> str:
        return job_key(kind, job_id)

    def create(self, job: Job) -> None:
        # Marker first: a job document never exists unseen by the runners' poll.
        self.state.put(active_job_key(job.kind, job.id),
                       json.dumps({"created_at": job.created_at.isoformat()}).encode())
        self.state.put(self.key(job.kind, job.id), json.dumps(job.to_json()).encode(),
                       if_absent=True)

    def read(self, kind: str, job_id: str) -> tuple[Job, str] | None:
        if not (KIND_RE.match(kind) and ID_RE.match(job_id)):
            return None
        current = self.state.get(self.key(kind, job_id))
        if current is None:
            return None
        return Job.from_json(json.loads(current.value)), current.token

    def update(self, kind: str, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Apply ``change`` to the current document until the compare-and-swap wins.
        ``change`` may raise (InvalidTransition) to give up; NotFound when missing."""
        while True:
            found = self.read(kind, job_id)
            if found is None:
                raise NotFound("no such job", code="job_not_found")
            job, token = found
            new = change(job)
            if new == job:
                return job
            try:
                self.state.put(self.key(kind, job_id), json.dumps(new.to_json()).encode(),
                               if_match=token)
            except PreconditionFailed:
                continue  # someone else moved it: re-read and decide again
            if new.state.terminal and not job.state.terminal:
                with contextlib.suppress(StoreError):  # a left marker is dropped on poll
                    self.state.delete(active_job_key(kind, job_id))
            return new

    def active(self, kind: str) -> Iterator[str]:
        for key in list(self.state.list(active_jobs_of(kind))):
            yield key.rsplit("/", 1)[1]

    def drop_marker(self, kind: str, job_id: str) -> None:
        with contextlib.suppress(StoreError):
            self.state.delete(active_job_key(kind, job_id))

    def all(self, kind: str) -> Iterator[Job]:
        for key in list(self.state.list(jobs_of(kind))):
            current = self.state.get(key)
            if current is not None:
                yield Job.from_json(json.loads(current.value))


class JobContext:
    """What a handler sees of its job. Thread-safe against the heartbeat thread."""

    def __init__(self, store: JobStore, workarea: WorkArea, job: Job, runner: str) -> None:
        self._store = store
        self._workarea = workarea
        self._runner = runner
        self.job = job  # as claimed: params, attempts, owner
        self._lock = threading.Lock()
        self._progress = job.progress
        self._pending_errors: list[tuple[str, str, dict[str, Any]]] = []
        self._cancelled = job.cancel_requested
        self._lost = False
        self._last_flush = 0.0
        self.interrupted = threading.Event()  # set by JobService.stop
        # Artifacts an earlier attempt finished before it died stay part of the result.
        prefix = f"{job.kind}/{job.id}/"
        self.artifacts: dict[str, ArtifactRef] = {
            ref.key[len(prefix):]: ref for ref in workarea.list(prefix)
            if workarea.stat(ref.key) is not None
        }

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params

    def resume_state(self) -> Mapping[str, Any] | None:
        """The last ``checkpoint`` of an earlier attempt (None on a first run)."""
        return self.job.checkpoint

    def progress(self, done: int, total: int | None = None, **counts: int) -> None:
        """Record progress; written to working state at most once a second (and with each
        heartbeat and checkpoint), so calling it per item is cheap."""
        with self._lock:
            merged = {**self._progress.counts, **counts}
            self._progress = Progress(done, total if total is not None else self._progress.total,
                                      merged)
        if time.monotonic() - self._last_flush >= 1.0:
            self.flush()

    def error(self, code: str, message: str, **details: Any) -> None:
        """A non-fatal error (a record that could not be exported): listed on the job."""
        with self._lock:
            self._pending_errors.append((code, message, details))
        self.flush()

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        """Save where the handler is (JSON-able, small): a resumed attempt gets it back
        from ``resume_state``. Written at once; raises JobLost when taken over, and
        CheckpointTooLarge (failing the job) beyond MAX_CHECKPOINT_BYTES."""
        size = len(json.dumps(state))
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointTooLarge(
                f"checkpoint of {size} bytes exceeds {MAX_CHECKPOINT_BYTES}: keep a position, "
                "not the data")
        self._write(lambda j: j.with_checkpoint(self._runner, state))

    def is_cancelled(self) -> bool:
        """True once a cancel was asked, another runner took the job over, or the process
        is shutting down: stop (``raise_if_cancelled`` says which)."""
        return self._cancelled or self._lost or self.interrupted.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise JobLost, JobCancelled or JobInterrupted; a handler calls it between items
        (after a checkpoint) and lets it propagate."""
        if self._lost:
            raise JobLost("the job was taken over by another runner")
        if self.interrupted.is_set() and not self._cancelled:
            raise JobInterrupted("the process is shutting down")
        if self._cancelled:
            raise JobCancelled("the job was cancelled")

    def artifact_key(self, name: str) -> str:
        return check_key(f"{self.job.kind}/{self.job.id}/{name}")

    def write_artifact(self, name: str, data: Chunks, *,
                       content_type: str = "application/octet-stream",
                       subjects: Iterable[str] = ()) -> ArtifactRef:
        """Stream an artifact into the working area under this job (``name`` a plain file
        name). ``subjects``: pseudonyms of everyone whose content it holds (erasure)."""
        ref = self._workarea.write(self.artifact_key(name), data,
                                           content_type=content_type, subjects=subjects)
        self.artifacts[name] = ref
        return ref

    # -- runner side -----------------------------------------------------------------

    def flush(self) -> None:
        self._write(lambda j: j.with_progress(self._runner, self._progress))

    def _apply(self, job: Job, change: Callable[[Job], Job]) -> Job:
        job = change(job)
        with self._lock:
            errors, self._pending_errors = self._pending_errors, []
        for code, message, details in errors:
            job = job.add_error(code, message, **details)
        return replace(job, progress=self._progress)

    def _write(self, change: Callable[[Job], Job]) -> None:
        try:
            job = self._store.update(
                self.job.kind, self.job.id,
                lambda j: self._apply(j.beat(self._runner, _now()), change))
        except InvalidTransition as exc:
            self._lost = True
            raise JobLost("the job was taken over by another runner") from exc
        self._cancelled = job.cancel_requested
        self._last_flush = time.monotonic()
