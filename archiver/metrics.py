"""Prometheus metrics (``prometheus-client``) and the public ``GET /metrics`` route.

Index lag and log size are read at scrape time from the runtime (never cached), so a
scrape always shows the lag as it is: ``archiver_index_lag`` rises while Elasticsearch is
down and returns to zero once the follower has caught up. Labels carry no personal data
(backend names and outcomes only; never queries or numbers).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from archiver.errors import ArchiverError
from search.errors import SearchError

if TYPE_CHECKING:
    from archiver.runtime import Runtime

REGISTRY = CollectorRegistry(auto_describe=True)

INDEX_LAG = Gauge(
    "archiver_index_lag", "Log leaves not yet indexed (-1: unknown)", registry=REGISTRY
)
LOG_SIZE = Gauge("archiver_log_size", "Leaves in the proof log (-1: unknown)", registry=REGISTRY)
INDEX_UP = Gauge("archiver_index_up", "1 when the index answers a ping", registry=REGISTRY)
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
    "archiver_audit_flush_failures", "Audit flushes that failed and were retried", registry=REGISTRY
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
    "archiver_audit_queue_depth", "Audit events queued or being written", registry=REGISTRY
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
    registry=REGISTRY,
)
STUCK_BATCHES = Gauge(
    "archiver_batches_stuck",
    "Raw batches captured over an hour ago and still not processed (-1: unknown)",
    registry=REGISTRY,
)

COEXISTENCE_CONNECTED = Gauge(
    "archiver_coexistence_connected",
    "1 while the Coexistence number is linked to the archive, 0 after Meta reported a "
    "disconnection (PARTNER_REMOVED, ACCOUNT_OFFBOARDED, ...); the business's own id, "
    "never a customer's",
    ["phone_number_id"],
    registry=REGISTRY,
)
COEXISTENCE_LAST_ACTIVITY = Gauge(
    "archiver_coexistence_last_activity_timestamp_seconds",
    "Unix time of the Coexistence number's newest record (alert on silence)",
    ["phone_number_id"],
    registry=REGISTRY,
)
CHECKPOINT_AGE = Gauge(
    "archiver_checkpoint_age_seconds",
    "Seconds since the latest signed checkpoint (-1: none yet or unknown)",
    registry=REGISTRY,
)
VERIFY_FINDINGS = Gauge(
    "archiver_verify_findings",
    "Findings of the latest verify sweep run by this process (-1: none run yet)",
    registry=REGISTRY,
)
VERIFY_LAST_RUN = Gauge(
    "archiver_verify_last_run_timestamp_seconds",
    "Unix time the latest verify sweep of this process finished (0: none yet)",
    registry=REGISTRY,
)
VERIFY_FINDINGS.set(-1)

router = APIRouter(tags=["health"])


def sample(runtime: Runtime) -> None:
    """Refresh the scrape-time gauges from the runtime."""
    try:
        size = runtime.log.size()
        LOG_SIZE.set(size)
        INDEX_LAG.set(max(0, size - runtime.follower.cursor()))
    except ArchiverError:
        LOG_SIZE.set(-1)
        INDEX_LAG.set(-1)
    try:
        runtime.index.ping()
        INDEX_UP.set(1)
    except SearchError:
        INDEX_UP.set(0)
    AUDIT_FAILURES.set(runtime.audit.failures)
    AUDIT_QUEUE_DEPTH.set(runtime.audit.depth())
    try:
        STUCK_BATCHES.set(runtime.processor.stuck_count())
    except ArchiverError:
        STUCK_BATCHES.set(-1)
    # Lazy, like coexistence below: retention imports this module.
    from archiver.retention.services import retention_services

    try:  # only this count: lag and stuck batches were sampled above
        UNFINISHED_ERASURES.set(retention_services(runtime).erasure.unfinished_count())
    except ArchiverError:
        UNFINISHED_ERASURES.set(-1)
    # Lazy: coexistence imports audit, which imports this module.
    from archiver.coexistence import service_for

    try:  # read from the view only; the coexistence-view job keeps it current
        service = service_for(runtime)
        for number, view in service.number_views().items():
            link = service.connection(number, view)
            COEXISTENCE_CONNECTED.labels(phone_number_id=number).set(int(link["connected"]))
            if view.get("last_activity"):
                last = datetime.fromisoformat(str(view["last_activity"]))
                COEXISTENCE_LAST_ACTIVITY.labels(phone_number_id=number).set(last.timestamp())
    except ArchiverError:
        pass  # the state store is down: the gauges keep their last value
    try:
        info = runtime.checkpoints.latest_info()
        signed = info.get("signed_at") if info else None
        if signed:
            at = datetime.fromisoformat(str(signed))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            CHECKPOINT_AGE.set(max(0.0, (datetime.now(UTC) - at).total_seconds()))
        else:
            CHECKPOINT_AGE.set(-1)
    except ArchiverError:
        CHECKPOINT_AGE.set(-1)


def record_verify(findings: int) -> None:
    """The scheduled verify sweep's outcome, for alerting (``archiver_verify_findings``)."""
    VERIFY_FINDINGS.set(findings)
    VERIFY_LAST_RUN.set(datetime.now(UTC).timestamp())


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition (public, like ``/readyz``)."""
    runtime: Runtime = request.app.state.runtime
    await asyncio.to_thread(sample, runtime)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
