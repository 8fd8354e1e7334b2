"""Per-stage pipeline metrics, and the metered store adapters that count round trips.

Stages (``archiver_pipeline_stage_seconds{stage}``), in the order a message meets them:

    capture_write   one capture batch: raw batch PUT under retention, its keys, pending entry
    claim           the processor claims a raw batch in working state
    raw_read        the raw batch read back (its version and retention)
    records_write   keys, grants, traces and the record PUTs of one batch; within it:
      records_capkeys   the batch's capture keys read (one state GET)
      records_keys      the subjects' data keys (session, look-ups or creations, grants)
      records_grants    waiting for the capture grants and traces, which land before any record
      records_put       the record PUTs (side by side), per chunk of ``APPEND_EVERY``
    entries         the batch's log entries built (raw retention extended if needed)
    log_save        the entries saved in the batch's state before the append
    log_append      the proof-log append (sequencing, tiles, commit)
    finish          holds on arrivals, media jobs, the batch marked done
    index_read      the indexer reads a range of the log, its records and their keys
    index_upsert    the indexer's bulk upsert (the documents are searchable on return)
    index_holds     query-scoped legal holds placed on the documents just indexed
    index_cursor    the indexer's cursor compare-and-swap

Round trips: the runtime wraps its object store and state store in ``Metered*`` adapters,
which count every call by store, operation and the kind of thread making it
(``archiver_store_calls_total{store,op,worker}``: ``processor``, ``indexer``, ``capture``
or ``other``), so round trips per batch or per record are a ratio of two counters::

    rate(archiver_store_calls_total{worker="processor",store="state"}[1m])
      / rate(archiver_pipeline_batches_total[1m])

All of these live in the one metrics registry (``archiver.metrics``), so they add up across
``serve --workers N`` processes in prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from archiver.metrics import REGISTRY
from archiver.store.port import (
    ObjectInfo,
    ObjectStore,
    PutResult,
    Retention,
    StateStore,
    StateValue,
    VersionEntry,
)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

STAGE_SECONDS = Histogram(
    "archiver_pipeline_stage_seconds",
    "Time spent in one pipeline stage per unit of work (a batch, a log range)",
    ["stage"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
STORE_CALLS = Counter(
    "archiver_store_calls_total",
    "Calls (round trips) to the object store, working-state store and index",
    ["store", "op", "worker"],
    registry=REGISTRY,
)
BATCHES = Counter(
    "archiver_pipeline_batches_total",
    "Raw batches processed to the end (status done) by this process",
    registry=REGISTRY,
)
RECORDS = Counter(
    "archiver_pipeline_records_total",
    "Records through a step: written (new), reused (a retry's own), indexed (leaves read)",
    ["step"],
    registry=REGISTRY,
)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a stage (failures included: a slow failing stage is still time spent)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage=name).observe(time.perf_counter() - started)


def worker_kind() -> str:
    """Who is calling, from the thread's name (the pools name their threads)."""
    name = threading.current_thread().name
    if name.startswith(("records", "processing")):
        return "processor"
    if name.startswith(("index", "indexing")):
        return "indexer"
    if name.startswith("capture"):
        return "capture"
    return "other"


def _count(store: str, op: str) -> None:
    STORE_CALLS.labels(store=store, op=op, worker=worker_kind()).inc()


class MeteredObjects:
    """``ObjectStore`` that counts each call (a listing counts once, whatever its pages)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:  # adapter extras (tests, admin commands)
        return getattr(self.inner, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        # Our own two fields here; anything else (a test's clock) is the adapter's.
        target = self if attr in ("inner", "name") else self.inner
        object.__setattr__(target, attr, value)

    def ping(self) -> None:
        _count("object", "ping")
        self.inner.ping()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention,
        legal_hold: bool = False,
        content_type: str = "application/octet-stream",
        fresh: bool = False,
    ) -> PutResult:
        _count("object", "put")
        return self.inner.put(key, data, retention=retention, legal_hold=legal_hold,
                              content_type=content_type, fresh=fresh)  # fmt: skip

    def get(self, key: str, version_id: str) -> bytes:
        _count("object", "get")
        return self.inner.get(key, version_id)

    def stat(self, key: str, version_id: str) -> ObjectInfo:
        _count("object", "stat")
        return self.inner.stat(key, version_id)

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        _count("object", "set_legal_hold")
        self.inner.set_legal_hold(key, version_id, on)

    def extend_retention(self, key: str, version_id: str, retain_until: datetime) -> None:
        _count("object", "extend_retention")
        self.inner.extend_retention(key, version_id, retain_until)

    def delete_version(self, key: str, version_id: str) -> None:
        _count("object", "delete_version")
        self.inner.delete_version(key, version_id)

    def list_versions(self, prefix: str = "") -> Iterator[VersionEntry]:
        _count("object", "list_versions")
        return self.inner.list_versions(prefix)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        _count("object", "list_keys")
        return self.inner.list_keys(prefix)


class MeteredState:
    """``StateStore`` that counts each call."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:  # adapter extras (ensure_bucket, close)
        return getattr(self.inner, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        target = self if attr in ("inner", "name") else self.inner
        object.__setattr__(target, attr, value)

    def ping(self) -> None:
        _count("state", "ping")
        self.inner.ping()

    def get(self, key: str) -> StateValue | None:
        _count("state", "get")
        return self.inner.get(key)

    def put(
        self, key: str, value: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        _count("state", "put")
        return self.inner.put(key, value, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        _count("state", "delete")
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> Iterator[str]:
        _count("state", "list")
        return self.inner.list(prefix)
