"""Durable jobs: the record and its state machine, with no I/O (docs/jobs.md).

A job is one JSON document in working state. Every change is a pure function from one
``Job`` to the next; ``archiver.jobs.durable`` applies them with compare-and-swap, so two
runners can never both move the same job::

    queued ──claim──▶ running ──succeed──▶ succeeded
      │                 │  ├────fail─────▶ failed
      │                 │  └──cancelled──▶ cancelled
      └──cancel────────────────────────────▶ cancelled
    running, heartbeat older than the TTL ──reclaim──▶ running (attempt + 1)
                                          └─abandon──▶ failed  (attempts used up)
    running, its process shutting down cleanly ──release──▶ queued (attempt given back)

Terminal states (succeeded, failed, cancelled) never change again except for the
artifact bookkeeping of the working area (expired or erased artifacts).

Raises ``InvalidTransition`` (a ``Conflict``) for a move the machine does not allow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from archiver.errors import Conflict, InvalidInput

KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_ERRORS = 50  # a job that reports thousands of errors keeps the first ones and a count


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class InvalidTransition(Conflict):
    code = "job_invalid_transition"


class ScopeHolder(Protocol):
    """What visibility needs of a caller (``archiver.auth.Principal`` fits)."""

    @property
    def token_id(self) -> str: ...

    def covers(self, numbers: Iterable[str] | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Who submitted the job: routes check it before showing or serving anything."""

    token_id: str
    role: str
    numbers: tuple[str, ...] | None  # the token's number scope; None = every number

    @classmethod
    def of(cls, principal: Any) -> JobOwner:
        """From an ``archiver.auth.Principal`` (duck-typed: role may be a StrEnum)."""
        numbers = principal.numbers
        return cls(str(principal.token_id), str(principal.role),
                   None if numbers is None else tuple(numbers))


@dataclass(frozen=True, slots=True)
class Progress:
    done: int = 0
    total: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def percent(self) -> float | None:
        if self.total is None:
            return None
        if self.total <= 0:
            return 100.0
        return round(min(100.0, 100.0 * self.done / self.total), 1)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat()


def _dt(s: Any) -> datetime | None:
    return None if s is None else datetime.fromisoformat(str(s))


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    params: Mapping[str, Any]
    owner: JobOwner
    numbers: tuple[str, ...] | None  # the numbers the job's content concerns (visibility)
    state: JobState
    created_at: datetime
    max_attempts: int
    attempts: int = 0
    runner: str | None = None  # the runner holding it while running
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    progress: Progress = Progress()
    errors: tuple[Mapping[str, Any], ...] = ()
    errors_dropped: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: Mapping[str, Any] | None = None
    cancel_requested: bool = False

    # -- visibility ------------------------------------------------------------------

    def visible_to(self, caller: ScopeHolder) -> bool:
        """The submitter always; anyone else only if their scope covers the job's numbers
        (a job about every number, ``numbers=None``, only for unscoped callers)."""
        return caller.token_id == self.owner.token_id or caller.covers(self.numbers)

    # -- transitions (each returns a new Job) ------------------------------------------

    def _must(self, *states: JobState, action: str) -> None:
        if self.state not in states:
            raise InvalidTransition(f"cannot {action} a {self.state} job",
                                    details={"job_id": self.id, "state": str(self.state)})

    def claim(self, runner: str, now: datetime) -> Job:
        """queued → running, one more attempt."""
        self._must(JobState.QUEUED, action="claim")
        return replace(self, state=JobState.RUNNING, runner=runner, attempts=self.attempts + 1,
                       started_at=self.started_at or now, heartbeat_at=now)

    def is_stale(self, now: datetime, ttl_s: float) -> bool:
        """Running, but its runner has not heart-beaten for ``ttl_s``: presumed dead."""
        if self.state is not JobState.RUNNING or self.heartbeat_at is None:
            return False
        return (now - self.heartbeat_at).total_seconds() > ttl_s

    def reclaim(self, runner: str, now: datetime, ttl_s: float) -> Job:
        """A stale running job: taken over (resuming from its checkpoint) while attempts
        remain, cancelled if a cancel was asked, failed for good otherwise."""
        self._must(JobState.RUNNING, action="reclaim")
        if not self.is_stale(now, ttl_s):
            raise InvalidTransition("the job's runner is alive", details={"job_id": self.id})
        if self.cancel_requested:
            return self.finish(JobState.CANCELLED, now)
        if self.attempts >= self.max_attempts:
            return self.add_error(
                "job_abandoned",
                f"the runner stopped after attempt {self.attempts} of {self.max_attempts} "
                f"(no heartbeat for more than {ttl_s:g} s); giving up",
            ).finish(JobState.FAILED, now)
        return replace(self, runner=runner, attempts=self.attempts + 1, heartbeat_at=now)

    def release(self, runner: str) -> Job:
        """running → queued on a clean shutdown: the attempt is given back and the next
        runner resumes from the checkpoint without waiting for the heartbeat TTL."""
        self._owned(runner)
        if self.cancel_requested:
            raise InvalidTransition("a cancelled job is not released", code="job_lost")
        return replace(self, state=JobState.QUEUED, runner=None,
                       attempts=max(0, self.attempts - 1), heartbeat_at=None)

    def beat(self, runner: str, now: datetime) -> Job:
        self._owned(runner)
        return replace(self, heartbeat_at=now)

    def _owned(self, runner: str) -> None:
        if self.state is not JobState.RUNNING or self.runner != runner:
            raise InvalidTransition("job no longer held by this runner",
                                    details={"job_id": self.id, "state": str(self.state)},
                                    code="job_lost")

    def with_progress(self, runner: str, progress: Progress) -> Job:
        self._owned(runner)
        return replace(self, progress=progress)

    def with_checkpoint(self, runner: str, checkpoint: Mapping[str, Any]) -> Job:
        self._owned(runner)
        return replace(self, checkpoint=dict(checkpoint))

    def add_error(self, code: str, message: str, **details: Any) -> Job:
        if len(self.errors) >= MAX_ERRORS:
            return replace(self, errors_dropped=self.errors_dropped + 1)
        entry: dict[str, Any] = {"code": code, "message": message[:1000]}
        if details:
            entry["details"] = details
        return replace(self, errors=(*self.errors, entry))

    def finish(self, state: JobState, now: datetime, result: Mapping[str, Any] | None = None,
               ) -> Job:
        """running → succeeded / failed / cancelled (also queued → cancelled, failed)."""
        if not state.terminal:
            raise InvalidTransition(f"{state} is not a final state")
        allowed = (JobState.RUNNING,) if state is JobState.SUCCEEDED else (
            JobState.RUNNING, JobState.QUEUED)
        self._must(*allowed, action=f"finish as {state}")
        return replace(self, state=state, finished_at=now, runner=None,
                       result=dict(result) if result is not None else self.result)

    def cancel(self, now: datetime) -> Job:
        """queued → cancelled at once; running → flagged (the handler stops at its next
        check, or a reclaim cancels it). Terminal jobs are refused."""
        self._must(JobState.QUEUED, JobState.RUNNING, action="cancel")
        if self.state is JobState.QUEUED:
            return self.finish(JobState.CANCELLED, now)
        return replace(self, cancel_requested=True)

    def redacted(self, params: Mapping[str, Any], now: datetime) -> Job:
        """Erasure of the data subject a job's parameters name (any state): ``params``
        replace them, error messages go (codes stay), and a job not finished is cancelled
        (at once when queued; a running one stops at its next check)."""
        errors = tuple({"code": e.get("code"), "message": "redacted: its data subject was "
                        "erased"} for e in self.errors)  # fmt: skip
        job = replace(self, params=dict(params), errors=errors)
        if job.state.terminal:
            return job
        return job.cancel(now)

    def with_result(self, result: Mapping[str, Any]) -> Job:
        """Artifact bookkeeping after the end (expiry, erasure): the only change allowed
        to a terminal job."""
        return replace(self, result=dict(result))

    # -- JSON ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1, "id": self.id, "kind": self.kind, "params": dict(self.params),
            "owner": {"token_id": self.owner.token_id, "role": self.owner.role,
                      "numbers": None if self.owner.numbers is None else list(self.owner.numbers)},
            "numbers": None if self.numbers is None else list(self.numbers),
            "state": str(self.state), "created_at": _iso(self.created_at),
            "max_attempts": self.max_attempts, "attempts": self.attempts, "runner": self.runner,
            "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "progress": {"done": self.progress.done, "total": self.progress.total,
                         "counts": dict(self.progress.counts)},
            "errors": [dict(e) for e in self.errors], "errors_dropped": self.errors_dropped,
            "result": dict(self.result), "checkpoint": self.checkpoint,
            "cancel_requested": self.cancel_requested,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Job:
        owner = doc["owner"]
        prog = doc.get("progress") or {}
        created = _dt(doc["created_at"])
        assert created is not None  # written by to_json, always set
        return cls(
            id=doc["id"], kind=doc["kind"], params=doc.get("params") or {},
            owner=JobOwner(owner["token_id"], owner["role"],
                           None if owner.get("numbers") is None else tuple(owner["numbers"])),
            numbers=None if doc.get("numbers") is None else tuple(doc["numbers"]),
            state=JobState(doc["state"]), created_at=created,
            max_attempts=int(doc["max_attempts"]), attempts=int(doc.get("attempts", 0)),
            runner=doc.get("runner"), started_at=_dt(doc.get("started_at")),
            finished_at=_dt(doc.get("finished_at")), heartbeat_at=_dt(doc.get("heartbeat_at")),
            progress=Progress(int(prog.get("done", 0)), prog.get("total"),
                              dict(prog.get("counts") or {})),
            errors=tuple(doc.get("errors") or ()), errors_dropped=int(doc.get("errors_dropped", 0)),
            result=doc.get("result") or {}, checkpoint=doc.get("checkpoint"),
            cancel_requested=bool(doc.get("cancel_requested", False)),
        )


def new_job(job_id: str, kind: str, params: Mapping[str, Any], owner: JobOwner, *,
            numbers: Iterable[str] | None, now: datetime, max_attempts: int) -> Job:
    """A queued job. ``numbers`` (what its content concerns) must lie inside the owner's
    scope: a scoped token cannot start a job over numbers it may not read."""
    if not KIND_RE.match(kind):
        raise InvalidInput(f"invalid job kind {kind!r}", code="job_kind_invalid")
    if not ID_RE.match(job_id):
        raise InvalidInput("invalid job id", code="job_id_invalid")
    wanted = None if numbers is None else tuple(sorted(set(numbers)))
    if owner.numbers is not None:
        if wanted is None:
            wanted = tuple(sorted(owner.numbers))
        elif not wanted or not set(wanted) <= set(owner.numbers):
            raise InvalidInput("the job's numbers are outside the caller's scope",
                             code="job_scope", details={"numbers": list(wanted)})
    if max_attempts < 1:
        raise InvalidInput("max_attempts must be at least 1")
    return Job(id=job_id, kind=kind, params=dict(params), owner=owner, numbers=wanted,
               state=JobState.QUEUED, created_at=now, max_attempts=max_attempts)


def job_view(job: Job) -> dict[str, Any]:
    """What routes return for ``GET /v1/<kind>s/{id}``: no params internals beyond the
    submitted options, no checkpoint, no runner id."""
    return {
        "id": job.id, "kind": job.kind, "state": str(job.state), "params": dict(job.params),
        "percent": job.progress.percent, "done": job.progress.done, "total": job.progress.total,
        "counts": dict(job.progress.counts), "errors": [dict(e) for e in job.errors],
        "errors_dropped": job.errors_dropped, "attempts": job.attempts,
        "max_attempts": job.max_attempts, "cancel_requested": job.cancel_requested,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "heartbeat_at": _iso(job.heartbeat_at),
        "owner": {"token_id": job.owner.token_id, "role": job.owner.role},
        "result": _public_result(job.result),
    }


def _public_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """The result without the artifacts' subject lists (pseudonyms are for erasure)."""
    out = dict(result)
    if "artifacts" in out:
        out["artifacts"] = [{k: v for k, v in a.items() if k != "subjects"}
                            for a in out["artifacts"]]
    return out
