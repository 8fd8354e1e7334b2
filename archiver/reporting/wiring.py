"""Building the report service from the runtime's parts (the runtime holds the result)."""

from __future__ import annotations

from archiver.jobs.durable import JobService
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.log import TransparencyLog
from archiver.records.pseudonym import Pseudonymizer
from archiver.reporting.gather import GatherConfig, ReportGatherer
from archiver.reporting.service import ReportService, load_signing_material
from archiver.settings import Settings
from archiver.store.port import ObjectStore, StateStore
from policies.model import PolicySet
from reports.facts import ComplianceFacts
from search.port import SearchIndex


def gather_config(settings: Settings) -> GatherConfig:
    return GatherConfig(
        archive_name=settings.log_origin.split("/", 1)[0],
        lock_mode=settings.lock_mode,
        silence_threshold_s=settings.report_silence_threshold_s,
        compliance=ComplianceFacts(audit_log_retention_days=settings.log_retention_days),
    )


def build_reports(
    settings: Settings, *, objects: ObjectStore, state: StateStore, index: SearchIndex,
    log: TransparencyLog, checkpoints: CheckpointSigner, policy_set: PolicySet,
    pseudo: Pseudonymizer | None = None,
) -> tuple[JobService, ReportService]:
    """The durable job service (report jobs registered) and the report service. Loads the
    report-signing pair: dev mode makes one on first use, production refuses without."""
    gatherer = ReportGatherer(
        config=gather_config(settings), objects=objects, state=state, index=index, log=log,
        checkpoints=checkpoints, policy_set=policy_set, pseudo=pseudo,
    )  # fmt: skip
    service = ReportService(
        gatherer=gatherer, objects=objects, log=log, signing=load_signing_material(settings),
        lock_mode=settings.lock_mode, retention_days=settings.log_retention_days,
    )  # fmt: skip
    jobs = JobService.from_settings(settings, state)
    service.register(jobs)
    return jobs, service
