"""The export job's dependencies from one runtime, and its registration on a JobService."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archiver.cases.wiring import case_service
from archiver.export.job import KIND, ExportDeps, export_handler
from archiver.jobs.setup import job_service
from archiver.store.port import LockMode

if TYPE_CHECKING:
    from archiver.jobs.durable import JobService
    from archiver.runtime import Runtime


def export_deps(runtime: Runtime) -> ExportDeps:
    s = runtime.settings
    return ExportDeps(
        objects=runtime.objects, state=runtime.state, index=runtime.index, keys=runtime.keys,
        kek=runtime.kek, log=runtime.log, checkpoints=runtime.checkpoints,
        cases=case_service(runtime), lock_mode=LockMode(s.lock_mode),
        log_retention_days=s.log_retention_days,
        workarea_delete=lambda key: export_jobs(runtime).workarea.delete(key),
    )  # fmt: skip


def register_export(service: JobService, runtime: Runtime) -> None:
    """Register the ``export`` kind (case exports and subject access) on ``service``."""
    service.register(KIND, export_handler(lambda: export_deps(runtime)))


def export_jobs(runtime: Runtime) -> JobService:
    """The runtime's job service (the one erasure drops artifacts through), with the
    ``export`` kind registered."""
    service = job_service(runtime)
    if not service.handles(KIND):
        register_export(service, runtime)
    return service
