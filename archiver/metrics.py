"""Prometheus metrics (``prometheus-client``): the registry and every gauge and counter.

A leaf module: the pipeline (processor, holds, audit, media, search routes) counts here.
The public ``GET /metrics`` route and the scrape-time sampling of the runtime live at the
edge, in ``archiver.api.routes.metrics``. Labels carry no personal data (backend names
and outcomes only; never queries or numbers).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REGISTRY = CollectorRegistry(auto_describe=True)

INDEX_LAG = Gauge(
    "archiver_index_lag",
    "Log leaves not yet indexed (-1: unknown)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
LOG_SIZE = Gauge(
    "archiver_log_size",
    "Leaves in the proof log (-1: unknown)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
INDEX_UP = Gauge(
    "archiver_index_up",
    "1 when the index answers a ping",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
SEARCHES = Counter(
    "archiver_searches_total", "Searches through the API", ["backend", "outcome"], registry=REGISTRY
)
SEARCH_SECONDS = Histogram(
    "archiver_search_seconds",
    "Search latency inside the API (index call only)",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
THREAD_VIEWS = Counter(
    "archiver_thread_views_total", "Conversation pages read through the API", registry=REGISTRY
)
AUDIT_FAILURES = Gauge(
    "archiver_audit_flush_failures",
    "Audit flushes that failed and were retried",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

AUDIT_SHED = Counter(
    "archiver_audit_events_shed_total",
    "Sheddable audit events (aggregated refusals of strangers) dropped on a full queue",
    ["event"],
    registry=REGISTRY,
)
AUDIT_REFUSED = Counter(
    "archiver_audit_refused_total",
    "Requests or events refused (503 audit_unavailable) because the audit queue was full",
    ["event"],
    registry=REGISTRY,
)
AUDIT_QUEUE_DEPTH = Gauge(
    "archiver_audit_queue_depth",
    "Audit events queued or being written",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
HOLD_FAILURES = Counter(
    "archiver_hold_failures_total",
    "Legal holds whose scope failed to run for new arrivals or a refresh (flagged broken)",
    ["reason"],
    registry=REGISTRY,
)

MEDIA_JOBS_PARKED = Counter(
    "archiver_media_jobs_parked_total",
    "Media jobs set aside after a failure of their own (they no longer block the others)",
    ["reason"],
    registry=REGISTRY,
)
MEDIA_JOBS_REFUSED = Counter(
    "archiver_media_jobs_refused_total",
    "Media jobs never fetched because their media id is not Meta's (message flagged)",
    ["reason"],
    registry=REGISTRY,
)
# Alerts (docs/production.md): any increase of the first, any non-zero value of the second.
UNPROCESSABLE_DELIVERIES = Counter(
    "archiver_unprocessable_deliveries_total",
    "Deliveries (or events of one) kept only raw, as an unprocessable record, by reason",
    ["reason"],
    registry=REGISTRY,
)
UNFINISHED_ERASURES = Gauge(
    "archiver_erasures_unfinished",
    "Erasure procedures begun (intent logged) and not yet done; the resume job finishes "
    "them within a minute, so a value that stays above 0 is an alert (-1: unknown)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
STUCK_BATCHES = Gauge(
    "archiver_batches_stuck",
    "Raw batches captured over an hour ago and still not processed (-1: unknown)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)

COEXISTENCE_CONNECTED = Gauge(
    "archiver_coexistence_connected",
    "1 while the Coexistence number is linked to the archive, 0 after Meta reported a "
    "disconnection (PARTNER_REMOVED, ACCOUNT_OFFBOARDED, ...); the business's own id, "
    "never a customer's",
    ["phone_number_id"],
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
COEXISTENCE_LAST_ACTIVITY = Gauge(
    "archiver_coexistence_last_activity_timestamp_seconds",
    "Unix time of the Coexistence number's newest record (alert on silence)",
    ["phone_number_id"],
    multiprocess_mode="max",
    registry=REGISTRY,
)
CHECKPOINT_AGE = Gauge(
    "archiver_checkpoint_age_seconds",
    "Seconds since the latest signed checkpoint (-1: none yet or unknown)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
VERIFY_FINDINGS = Gauge(
    "archiver_verify_findings",
    "Findings of the latest verify sweep run by this process (-1: none run yet)",
    multiprocess_mode="mostrecent",
    registry=REGISTRY,
)
VERIFY_LAST_RUN = Gauge(
    "archiver_verify_last_run_timestamp_seconds",
    "Unix time the latest verify sweep of this process finished (0: none yet)",
    multiprocess_mode="max",
    registry=REGISTRY,
)
VERIFY_FINDINGS.set(-1)


def record_verify(findings: int) -> None:
    """The scheduled verify sweep's outcome, for alerting (``archiver_verify_findings``)."""
    VERIFY_FINDINGS.set(findings)
    VERIFY_LAST_RUN.set(datetime.now(UTC).timestamp())


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """The text exposition of every metric. Under ``serve --workers N`` (prometheus-client's
    multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` set before the workers start), each
    process writes its values to files there and any one of them answers the scrape with
    the sum over all (counters, histograms), or the gauge's ``multiprocess_mode``."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess(directory: Path) -> None:
    """Make ``directory`` the (emptied) multiprocess folder of the processes started after
    this call: values of an earlier run must not add to this one's."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
