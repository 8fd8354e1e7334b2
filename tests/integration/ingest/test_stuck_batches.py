"""Issue 15 #9: no batch is ever dropped by age. ``pending_batches(days_back=8)`` lost a
batch claimed by a worker that died once the clock was nine days on. Now the pending
index in working state holds every batch until it is done; a stuck one is an alert, a
metric, a readiness field and a ``verify`` finding. On both stores."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from archiver import metrics
from archiver.api.routes.metrics import sample
from archiver.ingest.rawbatch import Delivery
from archiver.keyspace import PENDING_INDEX_READY, PENDING_PREFIX, PROC_PREFIX
from archiver.runtime import Runtime
from tests.conftest import shared_dir


def _capture(rt: Runtime) -> str:
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    now = datetime.now(UTC).isoformat()
    return rt.capture_writer.write([Delivery(body, now, "sha256=x", 0, None)]).key


def _stuck_gauge(rt: Runtime) -> float:
    sample(rt)
    value = metrics.REGISTRY.get_sample_value("archiver_batches_stuck")
    assert value is not None
    return value


def test_a_claimed_batch_nine_days_old_is_found_flagged_and_processed(runtime: Runtime) -> None:
    rt = runtime
    key = _capture(rt)
    batch_id = key.rsplit("/", 1)[-1]
    # A worker claimed it and died: its claim has long expired.
    rt.state.put(PROC_PREFIX + batch_id, json.dumps(
        {"status": "claimed", "owner": "dead-worker", "until": time.time() - 1}).encode())
    nine_days_on = datetime.now(UTC) + timedelta(days=9)
    rt.processor.clock = lambda: nine_days_on

    assert rt.processor.pending_batches() == [key]
    stuck = rt.processor.stuck_batches()
    assert [(s["batch_id"], s["status"]) for s in stuck] == [(batch_id, "claimed")]
    assert rt.processor.stuck_count() == 1
    assert _stuck_gauge(rt) == 1
    assert rt.readiness_extras()["stuck_batches"] == 1
    report = rt.proofs.verify(None, None, grace=0)
    assert ("batch:stuck", key) in {(f.kind.value, f.key) for f in report.findings}

    outcomes = rt.processor.sweep()
    assert [(o.batch_id, o.status) for o in outcomes] == [(batch_id, "done")]
    assert rt.processor.pending_batches() == []
    assert rt.processor.stuck_count() == 0
    assert _stuck_gauge(rt) == 0
    assert list(rt.state.list(PENDING_PREFIX)) == []
    report = rt.proofs.verify(None, None, grace=0)
    assert not [f for f in report.findings if f.kind.value == "batch:stuck"], report.findings


def test_batches_captured_before_the_index_join_it_once(runtime: Runtime) -> None:
    """An archive upgraded from the day-window sweep: its unprocessed batches (however old)
    enter the pending index on the first sweep, by one full scan of raw/."""
    rt = runtime
    key = _capture(rt)
    batch_id = key.rsplit("/", 1)[-1]
    rt.processor.pending_batches()  # the index is now marked complete
    rt.state.delete(PENDING_PREFIX + batch_id)  # as if captured by the old version
    rt.state.delete(PENDING_INDEX_READY)
    rt.processor.clock = lambda: datetime.now(UTC) + timedelta(days=400)
    assert rt.processor.pending_batches() == [key]
    assert rt.state.get(PENDING_INDEX_READY) is not None
    assert [o.status for o in rt.processor.sweep()] == ["done"]
    assert rt.processor.pending_batches() == []

