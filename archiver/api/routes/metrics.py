"""The public ``GET /metrics`` route: Prometheus text exposition of ``archiver.metrics``.

Index lag and log size are read at scrape time from the runtime (never cached), so a
scrape always shows the lag as it is: ``archiver_index_lag`` rises while Elasticsearch is
down and returns to zero once the follower has caught up.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from archiver import metrics as m
from archiver.errors import ArchiverError
from archiver.runtime import Runtime
from search.errors import SearchError

router = APIRouter(tags=["health"])


def sample(runtime: Runtime) -> None:
    """Refresh the scrape-time gauges from the runtime."""
    try:
        size = runtime.log.size()
        m.LOG_SIZE.set(size)
        m.INDEX_LAG.set(max(0, size - runtime.follower.cursor()))
    except ArchiverError:
        m.LOG_SIZE.set(-1)
        m.INDEX_LAG.set(-1)
    try:
        runtime.index.ping()
        m.INDEX_UP.set(1)
    except SearchError:
        m.INDEX_UP.set(0)
    m.AUDIT_FAILURES.set(runtime.audit.failures)
    m.AUDIT_QUEUE_DEPTH.set(runtime.audit.depth())
    try:
        m.STUCK_BATCHES.set(runtime.processor.stuck_count())
    except ArchiverError:
        m.STUCK_BATCHES.set(-1)
    try:  # only this count: lag and stuck batches were sampled above
        m.UNFINISHED_ERASURES.set(runtime.retention.erasure.unfinished_count())
    except ArchiverError:
        m.UNFINISHED_ERASURES.set(-1)
    try:  # read from the view only; the coexistence-view job keeps it current
        service = runtime.coexistence()
        for number, view in service.number_views().items():
            link = service.connection(number, view)
            m.COEXISTENCE_CONNECTED.labels(phone_number_id=number).set(int(link["connected"]))
            if view.get("last_activity"):
                last = datetime.fromisoformat(str(view["last_activity"]))
                m.COEXISTENCE_LAST_ACTIVITY.labels(phone_number_id=number).set(last.timestamp())
    except ArchiverError:
        pass  # the state store is down: the gauges keep their last value
    try:
        info = runtime.checkpoints.latest_info()
        signed = info.get("signed_at") if info else None
        if signed:
            at = datetime.fromisoformat(str(signed))
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            m.CHECKPOINT_AGE.set(max(0.0, (datetime.now(UTC) - at).total_seconds()))
        else:
            m.CHECKPOINT_AGE.set(-1)
    except ArchiverError:
        m.CHECKPOINT_AGE.set(-1)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition (public, like ``/readyz``)."""
    runtime: Runtime = request.app.state.runtime
    await asyncio.to_thread(sample, runtime)
    return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)
