"""Prometheus metrics (``prometheus-client``): the registry and every gauge and counter.

A leaf module: the pipeline (processor, holds, audit, media, search routes) counts here.
The public ``GET /metrics`` route and the scrape-time sampling of the runtime live at the
edge, in ``archiver.api.routes.metrics``. Labels carry no personal data (backend names
and outcomes only; never queries or numbers).
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

def record_verify(findings: int) -> None:
    """The scheduled verify sweep's outcome, for alerting (``archiver_verify_findings``)."""
    VERIFY_FINDINGS.set(findings)
    VERIFY_LAST_RUN.set(datetime.now(UTC).timestamp())
