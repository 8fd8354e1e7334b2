"""Building the report service from a runtime (until the runtime holds it as a field)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archiver.reporting.gather import GatherConfig, ReportGatherer
from archiver.reporting.service import ReportService, load_signing_material
from reports.facts import ComplianceFacts

if TYPE_CHECKING:
    from archiver.runtime import Runtime


def gather_config(runtime: Runtime) -> GatherConfig:
    s = runtime.settings
    return GatherConfig(
        archive_name=s.log_origin.split("/", 1)[0],
        lock_mode=s.lock_mode,
        silence_threshold_s=s.report_silence_threshold_s,
        compliance=ComplianceFacts(audit_log_retention_days=s.log_retention_days),
    )


def report_service(runtime: Runtime) -> ReportService:
    gatherer = ReportGatherer(
        config=gather_config(runtime), objects=runtime.objects, state=runtime.state,
        index=runtime.index, log=runtime.log, checkpoints=runtime.checkpoints,
        policy_set=runtime.policy.policy_set,
    )  # fmt: skip
    return ReportService(
        gatherer=gatherer, objects=runtime.objects, log=runtime.log,
        signing=load_signing_material(runtime.settings), lock_mode=runtime.settings.lock_mode,
        retention_days=runtime.settings.log_retention_days,
    )  # fmt: skip
