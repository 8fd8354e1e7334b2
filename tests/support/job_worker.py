"""A durable-job runner process for crash tests (tests/integration/jobs).

Usage: python -m tests.support.job_worker
Backends and job settings come from the ``ARCHIVER_*`` environment (``settings_env``). It
runs the ``count`` handler below until no job is left, printing ``step N`` as it goes, so
the test can SIGKILL it in the middle of a job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from archiver.jobs.durable import JobContext, JobService
from archiver.runtime import open_state_store
from archiver.settings import load_settings

STEP_S = 0.05


def count(ctx: JobContext) -> Mapping[str, Any]:
    """Counts to ``params["n"]``, checkpointing every step; resumes where it stopped."""
    n = int(ctx.params["n"])
    resume = ctx.resume_state() or {}
    start = int(resume.get("i", 0))
    for i in range(start, n):
        time.sleep(STEP_S)
        ctx.checkpoint({"i": i + 1})
        ctx.progress(i + 1, n, steps=i + 1)
        if i + 1 == 5:  # an artifact made early: a resumed attempt does not redo it
            ctx.write_artifact("early.txt", iter([b"early"]), subjects=["subj-early"])
        sys.stdout.write(f"step {i + 1} attempt {ctx.job.attempts}\n")
        sys.stdout.flush()
        ctx.raise_if_cancelled()

    def lines() -> Iterator[bytes]:
        for i in range(n):
            yield f"{i}\n".encode()

    ctx.write_artifact("count.txt", lines(), content_type="text/plain", subjects=["subj-a"])
    return {"resumed_from": start, "attempt": ctx.job.attempts}


def main() -> int:
    settings = load_settings()
    service = JobService.from_settings(settings, open_state_store(settings, create=True))
    service.poll_interval = 0.1
    service.register("count", count)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    service.run_until_idle(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
