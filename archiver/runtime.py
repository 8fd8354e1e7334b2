"""The runtime: every adapter and service of one app process, built from settings.

Nothing here runs at import time; ``Runtime.open(settings)`` connects, and
``close()`` lets go. The API, the CLI and the workers all build the same runtime, so
there is one code path whichever backends are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.audit import SYSTEM, AuditAction, AuditTrail
from archiver.auth import TokenService
from archiver.cases.service import CaseService
from archiver.coexistence import VIEW_INTERVAL_S as COEXISTENCE_VIEW_INTERVAL_S
from archiver.coexistence import Coexistence
from archiver.errors import ArchiverError, ConfigError
from archiver.indexing.follower import IndexFollower
from archiver.indexing.recent import COEXISTENCE_READER, INDEX_READER, RecentObjects
from archiver.ingest.capture import CaptureService, CaptureWriter
from archiver.ingest.ports import LoggedHook
from archiver.ingest.processor import Processor
from archiver.jobs.durable import JobService
from archiver.jobs.scheduler import Jobs
from archiver.jobs.workers import IndexingLoop, ProcessingLoop
from archiver.keys.envelope import KeyEncryptionKey, LocalKek
from archiver.keys.store import KeyStore
from archiver.keyspace import SHREDDABLE_STATE
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.errors import LedgerError
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer
from archiver.media.loop import MediaLoop, build_graph, start_media_loop
from archiver.metering import MeteredObjects, MeteredState
from archiver.metrics import record_verify
from archiver.proofs.service import ProofService
from archiver.records.pseudonym import Pseudonymizer
from archiver.reporting.schedule import add_report_schedule
from archiver.reporting.service import ReportService
from archiver.reporting.wiring import build_reports
from archiver.retention.apply import APPLY_CHECK_INTERVAL_S as RETENTION_APPLY_CHECK_S
from archiver.retention.apply import apply_if_policies_changed
from archiver.retention.arrivals import hold_indexed_arrivals
from archiver.retention.erasure import RESUME_INTERVAL_S as ERASURE_RESUME_INTERVAL_S
from archiver.retention.holds import FAMILY_PASS_INTERVAL_S as HOLDS_FAMILY_INTERVAL_S
from archiver.retention.holds import REFRESH_INTERVAL_S as HOLDS_REFRESH_INTERVAL_S
from archiver.retention.holds import on_logged as holds_on_logged
from archiver.retention.policy import EngineDecider, load_policy_set
from archiver.retention.residue import erasure_residue
from archiver.retention.services import RetentionServices, retention_services
from archiver.security_events import SecurityRecorder
from archiver.settings import IndexKind, Settings, StateKind, StoreKind
from archiver.store.errors import StoreError
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore
from archiver.subjects.identity import resolve_subject
from archiver.subjects.traces import mark_if_fresh
from policies.errors import PolicyError
from search.errors import SearchError
from search.port import SearchIndex

if TYPE_CHECKING:
    from archiver.export.job import ExportDeps
    from archiver.whatsapp.graph import GraphClient


def open_object_store(settings: Settings, *, create: bool = False) -> ObjectStore:
    if settings.store is StoreKind.LOCAL:
        from archiver.store.local import LocalObjectStore
        from archiver.store.state_sqlite import private_dir

        private_dir(settings.data_dir)  # 0700: the index and working state are in it
        root = settings.data_dir / "evidence"
        root.mkdir(parents=True, exist_ok=True)
        return LocalObjectStore(root)
    from archiver.store._s3common import make_client
    from archiver.store.s3 import S3ObjectStore, create_locked_bucket

    client = make_client(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    if create and not client.bucket_exists(settings.evidence_bucket):
        create_locked_bucket(client, settings.evidence_bucket)
    return S3ObjectStore(client, settings.evidence_bucket)


def open_state_store(settings: Settings, *, create: bool = False) -> StateStore:
    default = _open_default_state(settings, create=create)
    if settings.state is StateKind.DEFAULT:
        return default
    from archiver.store.state_pg import PgStateStore
    from archiver.store.state_route import RoutedStateStore

    dsn = settings.state_dsn.get_secret_value()
    if not dsn.strip():
        raise ConfigError("ARCHIVER_STATE=postgres needs ARCHIVER_STATE_DSN")
    # Key material and derived copies stay where a delete really forgets (state_route).
    return RoutedStateStore(PgStateStore(dsn), default, SHREDDABLE_STATE)


def _open_default_state(settings: Settings, *, create: bool) -> StateStore:
    if settings.store is StoreKind.LOCAL:
        from archiver.store.state_sqlite import SqliteStateStore, private_dir

        private_dir(settings.data_dir)
        return SqliteStateStore(settings.data_dir / "state.sqlite3")
    from archiver.store.state_s3 import connect_s3_state

    store = connect_s3_state(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        settings.s3_secure,
        settings.state_bucket,
        settings.s3_region,
    )
    if create:
        store.ensure_bucket()
    return store


def open_index(settings: Settings) -> SearchIndex:
    if settings.index is IndexKind.SQLITE:
        from archiver.store.state_sqlite import private_dir
        from search.sqlite import SqliteIndex

        private_dir(settings.data_dir)
        return SqliteIndex(settings.data_dir / "index.sqlite3")
    from search.elastic import ElasticIndex

    return ElasticIndex(settings.es_url, alias=settings.es_alias)


def load_signer(settings: Settings) -> Signer:
    """The checkpoint signing key: ``ARCHIVER_SIGNING_KEY_FILE`` or ``ARCHIVER_SIGNING_KEY``."""
    if settings.signing_key_file is not None:
        text = settings.signing_key_file.read_text().strip()
    else:
        text = settings.signing_key.get_secret_value()
    try:
        return Signer.from_key_text(text)
    except LedgerError as exc:
        raise ConfigError(f"ARCHIVER_SIGNING_KEY is not a C2SP signer key: {exc}") from exc


def load_kek(settings: Settings) -> KeyEncryptionKey:
    """The key-encryption key, from ``ARCHIVER_KEK_FILE`` or ``ARCHIVER_KEK`` (base64)."""
    if settings.kek_file is not None:
        material = settings.kek_file.read_text().strip()
    else:
        material = settings.kek.get_secret_value()
    return LocalKek.from_b64(material)


def _audit_sink(audit: AuditTrail) -> Callable[[dict[str, Any]], None]:
    """Security events go on the record like every other event."""

    def sink(event: dict[str, Any]) -> None:
        details = {k: v for k, v in event.items() if k != "event"}
        # Aggregates of strangers' refused requests: shed, never crowding out kept events.
        audit.record(AuditAction(event["event"]), SYSTEM, sheddable=True, **details)

    return sink


def _spool_dir(jobs: JobService) -> Callable[[], Path] | None:
    """The scope walk's scratch folder: this process's job spool folder (owner-only,
    swept after a crash), so ``ARCHIVER_SPOOL_DIR`` governs where its files land."""
    spool = jobs.spool
    return None if spool is None else spool.process_dir


@dataclass
class Runtime:
    settings: Settings
    objects: ObjectStore
    state: StateStore
    index: SearchIndex
    tokens: TokenService
    security: SecurityRecorder
    pseudo: Pseudonymizer
    kek: KeyEncryptionKey
    keys: KeyStore
    policy: EngineDecider
    log: TransparencyLog
    capture_writer: CaptureWriter
    capture: CaptureService
    processor: Processor
    follower: IndexFollower
    audit: AuditTrail
    checkpoints: CheckpointSigner
    proofs: ProofService
    jobs: Jobs
    # The processor's bytes for the follower of this runtime (one cache, passed to both).
    recent: RecentObjects
    # Retention's hook on every record writer (processor, consent recorder): hold new arrivals.
    on_logged: LoggedHook
    retention: RetentionServices
    cases: CaseService
    # Durable jobs (report jobs registered) and signed audit reports (archiver.reporting).
    job_service: JobService
    reports: ReportService
    processing: ProcessingLoop | None = None
    indexing: IndexingLoop | None = None
    graph: GraphClient | None = None  # set when ARCHIVER_GRAPH_TOKEN is (media, send proxy)
    media: MediaLoop | None = None

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Runtime:
        # Every call to the stores is counted (archiver.metering: round trips per stage).
        objects: ObjectStore = MeteredObjects(open_object_store(settings, create=create))
        state: StateStore = MeteredState(open_state_store(settings, create=create))
        # A fresh archive: conversation traces cover every record (subjects.traces).
        with contextlib.suppress(StoreError):  # unreachable now: the next open sets it
            mark_if_fresh(objects, state)
        index = open_index(settings)
        kek = load_kek(settings)
        pseudo = Pseudonymizer.from_setting(settings.pseudonym_key.get_secret_value())
        keys = KeyStore(state, kek)
        try:
            policy_set = load_policy_set(settings.policy_dir, settings.policy_parameters())
        except PolicyError as exc:
            raise ConfigError(str(exc)) from exc
        lock = LockMode(settings.lock_mode)
        decider = EngineDecider(
            policy_set, lock_override=LockMode.GOVERNANCE if lock is LockMode.GOVERNANCE else None
        )

        def log_retention() -> Retention:
            return Retention(lock, datetime.now(UTC) + timedelta(days=settings.log_retention_days))

        log = TransparencyLog(objects, state, settings.log_origin, log_retention)
        writer = CaptureWriter(
            objects, state, kek, retention_days=settings.raw_retention_days, lock_mode=lock,
            raw_policy=decider.raw_capture_until,
        )
        capture = CaptureService(
            writer,
            max_batch=settings.capture_batch_max,
            max_wait_s=settings.capture_batch_wait_ms / 1000,
            max_inflight=settings.capture_inflight,
            busy_wait_s=settings.capture_batch_busy_wait_ms / 1000,
        )
        recent = RecentObjects(readers=(INDEX_READER, COEXISTENCE_READER))
        on_logged = holds_on_logged(objects=objects, state=state, log=log, keys=keys)
        processor = Processor(
            objects=objects,
            state=state,
            kek=kek,
            subject_keys=keys,
            pseudo=pseudo,
            policy=decider,
            log_appender=log,
            on_logged=on_logged,
            recent=recent,
            keywords=settings.keywords,
        )
        follower = IndexFollower(
            log_reader=log, objects=objects, state=state, keys=keys, index=index, pseudo=pseudo,
            after_upsert=lambda ids: hold_indexed_arrivals(
                index=index, objects=objects, state=state, log=log, keys=keys, doc_ids=ids
            ),
            recent=recent,
        )  # fmt: skip
        checkpoints = CheckpointSigner(log, load_signer(settings), objects, state)
        proofs = ProofService(
            log,
            checkpoints,
            objects,
            index,
            extra_trusted=tuple(k.strip() for k in settings.trusted_keys.split(",") if k.strip()),
            residue=lambda: erasure_residue(log, objects, state, index),
        )
        audit = AuditTrail(
            objects, log, retention_days=settings.log_retention_days, lock_mode=lock,
            max_pending=settings.audit_queue_max,
        )  # fmt: skip
        security = SecurityRecorder(sink=_audit_sink(audit))
        retention = retention_services(
            objects=objects, state=state, log=log, keys=keys, index=index, pseudo=pseudo,
            policy=decider, lock=lock, log_retention_days=settings.log_retention_days,
            kek=kek,
        )  # fmt: skip
        audit.before_flush.append(security.flush_due)  # ended refusal windows, each round
        job_service, reports = build_reports(
            settings, objects=objects, state=state, index=index, log=log,
            checkpoints=checkpoints, policy_set=decider.policy_set, pseudo=pseudo,
        )  # fmt: skip
        runtime = cls(
            settings=settings,
            objects=objects,
            state=state,
            index=index,
            tokens=TokenService(state),
            security=security,
            pseudo=pseudo,
            kek=kek,
            keys=keys,
            policy=decider,
            log=log,
            capture_writer=writer,
            capture=capture,
            processor=processor,
            follower=follower,
            audit=audit,
            graph=build_graph(settings),
            checkpoints=checkpoints,
            proofs=proofs,
            jobs=Jobs(state),
            recent=recent,
            on_logged=on_logged,
            retention=retention,
            cases=CaseService(state=state, index=index, holds=retention.holds, audit=audit,
                              scratch=_spool_dir(job_service)),
            job_service=job_service,
            reports=reports,
        )
        # Erasure deletes working-area artifacts (export packages) naming the subject.
        runtime.retention.erasure.artifact_droppers.append(
            lambda subject: runtime.job_service.drop_subject(subject))
        # ... and redacts the subject access jobs naming it (their contact).
        runtime.retention.erasure.job_redactors.append(runtime._redact_subject_access)
        # ... and replaces it among cases' custodian contacts by an erased marker.
        runtime.retention.erasure.job_redactors.append(runtime._erase_custodians)
        # Reports read history-sync progress from the Coexistence view: bring it up to date
        # first (reporting and coexistence are one layer apart from each other).
        runtime.reports.gatherer.history_catch_up = lambda: runtime.coexistence().catch_up()
        return runtime

    def _redact_subject_access(self, phone_number_id: str,
                               subjects: Sequence[str]) -> list[str]:  # fmt: skip
        from archiver.export.job import redact_subject_access

        return redact_subject_access(self.job_service, self.state, self.pseudo,
                                     phone_number_id, subjects)  # fmt: skip

    def _erase_custodians(self, phone_number_id: str, subjects: Sequence[str]) -> list[str]:
        wanted = set(subjects)

        def is_person(contact: str) -> bool:
            return resolve_subject(self.state, self.pseudo, phone_number_id, contact) in wanted

        return self.cases.erase_custodians(phone_number_id, subjects, is_person)

    def export_deps(self) -> ExportDeps:
        from archiver.export.job import ExportDeps

        s = self.settings
        spool = self.job_service.spool
        return ExportDeps(
            objects=self.objects, state=self.state, index=self.index, keys=self.keys,
            kek=self.kek, log=self.log, checkpoints=self.checkpoints, cases=self.cases,
            lock_mode=LockMode(s.lock_mode), log_retention_days=s.log_retention_days,
            workarea_delete=lambda key: self.job_service.workarea.delete(key),
            pseudo=self.pseudo,
            # Not the system temp folder: a killed attempt's plaintext is swept from here.
            spool_dir=None if spool is None else spool.process_dir(),
        )  # fmt: skip

    def register_export(self, service: JobService) -> None:
        """The ``export`` kind (case exports and subject access) on ``service``."""
        from archiver.export.job import KIND, export_handler, export_orphan_final

        service.register(KIND, export_handler(self.export_deps),
                         on_orphan_final=export_orphan_final(self.export_deps))

    def export_jobs(self) -> JobService:
        """The job service with the ``export`` kind registered: on first use, not in
        ``open`` (the export code loads the PDF renderer)."""
        from archiver.export.job import KIND

        if not self.job_service.handles(KIND):
            self.register_export(self.job_service)
        return self.job_service

    def start_workers(self, *, capturing: bool = True) -> None:
        """Processing and indexing threads (the app runs them unless inline_workers=false).
        ``capturing=False`` (``archiver worker``): no capture in this process hands batches
        over, so the store is swept for new ones every ``worker_sweep_s``."""
        self.indexing = IndexingLoop(self.follower)
        extra = [
            self.processor.sibling() for _ in range(self.settings.processing_workers - 1)
        ]
        self.processing = ProcessingLoop(
            [self.processor, *extra], after_batch=self.indexing.wake,
            sweep_every=30.0 if capturing else self.settings.worker_sweep_s,
        )  # fmt: skip
        self.capture.on_batch = self.processing.submit
        self.capture.backlog = self.processing.backlog
        self.processing.start()
        self.indexing.start()
        self.jobs.add(
            "checkpoint",
            self.checkpoints.sign_if_grown,
            seconds=self.settings.checkpoint_interval_s,
            lease_ttl=max(30.0, 3 * self.settings.checkpoint_interval_s),
        )
        self.jobs.add(  # a Coexistence disconnection is logged (and metered) at once
            "coexistence-view",
            lambda: self.coexistence().catch_up(),
            seconds=COEXISTENCE_VIEW_INTERVAL_S,
            lease_ttl=600.0,
        )
        self.jobs.add(
            "verify-sweep",
            lambda: record_verify(
                len(self.proofs.verify(self.settings.verify_sample, self.audit).findings)
            ),
            seconds=self.settings.verify_interval_s,
            lease_ttl=3600.0,
        )
        self.jobs.add(
            "disposition",
            self.retention.disposition.run,
            seconds=self.settings.disposition_interval_s,
            lease_ttl=3600.0,
        )
        self.jobs.add(  # finishes an erasure a crash interrupted (retention.erasure)
            "erasure-resume",
            self.retention.erasure.resume_pending,
            # Promptly, and at start: until it finishes, the log says "erasure intended"
            # while the content is still readable. Cheap: it lists open markers only.
            seconds=ERASURE_RESUME_INTERVAL_S,
            lease_ttl=300.0,
            at_start=True,
            release_after=True,  # a restart after a crash resumes at once, not in 5 min
        )
        self.jobs.add(  # a changed policy set lengthens existing locks (retention apply)
            "retention-apply",
            lambda: apply_if_policies_changed(
                self.retention.applier, self.state, self.policy.fingerprint
            ),
            seconds=RETENTION_APPLY_CHECK_S,
            lease_ttl=3600.0,
            at_start=True,
        )
        self.jobs.add(  # safety net behind the follower's query-hold hook
            "holds-refresh",
            self.retention.holds.refresh_query_holds,
            seconds=HOLDS_REFRESH_INTERVAL_S,
            lease_ttl=3600.0,
        )
        self.jobs.add(  # the index lag a hold's placement left to the background (applying)
            "holds-family",
            self.retention.holds.finish_family_tails,
            seconds=HOLDS_FAMILY_INTERVAL_S,
            lease_ttl=600.0,
            at_start=True,
            release_after=True,  # a restart after a crash finishes the tails at once
        )
        self.jobs.add(  # holds placed before held targets existed get them, at start
            "holds-backfill",
            self.retention.holds.backfill_targets,
            seconds=HOLDS_REFRESH_INTERVAL_S,
            lease_ttl=600.0,
            at_start=True,
            # A run's lease only: a restart after a crash backfills at once, instead of
            # waiting out the dead process's lease (cheap: one listing when nothing to do).
            release_after=True,
        )
        add_report_schedule(self.jobs, self.job_service, self.settings)  # monthly reports
        self.job_service.schedule(self.jobs)  # the working area's expiry sweep
        self.jobs.start()
        self.export_jobs()  # the export kind, registered before the runners start
        self.job_service.start()  # report and export job runners
        self.media = start_media_loop(
            objects=self.objects, state=self.state, keys=self.keys, log=self.log,
            pseudo=self.pseudo, graph=self.graph,
        )  # fmt: skip

    def coexistence(self) -> Coexistence:
        """The Coexistence service on this runtime's parts (cheap; built per use, so it
        always sees the current Graph client)."""
        return Coexistence(
            objects=self.objects,
            state=self.state,
            keys=self.keys,
            log=self.log,
            audit=self.audit,
            graph=self.graph,
            silence_hours=self.settings.silence_alert_hours,
            recent=self.recent,
        )

    async def start(self) -> None:
        # The index may be down at start: readiness says so, and capture goes on.
        with contextlib.suppress(SearchError):
            await asyncio.to_thread(self.index.ensure_index)
        await self.capture.start()
        self.audit.start()
        if self.settings.inline_workers:
            self.start_workers()

    async def stop(self) -> None:
        await self.capture.stop()
        await asyncio.to_thread(self.jobs.stop)
        await asyncio.to_thread(self.job_service.stop)
        self.security.flush_due(force=True)  # the window in progress goes on the record too
        await asyncio.to_thread(self.audit.stop)
        for loop in (self.processing, self.indexing, self.media):
            if loop is not None:
                await asyncio.to_thread(loop.stop)

    def readiness_extras(self) -> dict[str, Any]:
        try:
            lag: int | None = self.follower.lag()
        except ArchiverError:
            lag = None
        try:  # batches stuck in processing: never dropped, always shown
            stuck: int | None = self.processor.stuck_count()
        except ArchiverError:
            stuck = None
        try:  # erasures a crash interrupted: the resume job finishes them within a minute
            erasures: int | None = self.retention.erasure.unfinished_count()
        except ArchiverError:
            erasures = None
        return {"index_lag": lag, "stuck_batches": stuck, "unfinished_erasures": erasures}

    def close(self) -> None:
        for part in (self.index, self.state):
            closer = getattr(part, "close", None)
            if callable(closer):
                closer()
