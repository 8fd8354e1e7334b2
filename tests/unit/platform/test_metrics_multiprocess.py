"""``serve --workers N``: every worker process counts its own stages and round trips, and a
scrape answered by any one of them shows the sum over all (prometheus-client's
multiprocess mode, ``archiver.metrics.prepare_multiprocess``)."""

from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path

import pytest

from archiver import metering, metrics


def _worker(observations: int, calls: int) -> None:
    # A fresh interpreter ("spawn"), like a uvicorn worker: it reads the folder at import.
    from archiver.metering import STAGE_SECONDS, STORE_CALLS

    for _ in range(observations):
        STAGE_SECONDS.labels(stage="claim").observe(0.02)
    STORE_CALLS.labels(store="state", op="get", worker="processor").inc(calls)
    metrics.INDEX_LAG.set(observations)


def _value(text: str, line: str) -> float:
    match = re.search(rf"^{re.escape(line)} (\S+)$", text, re.M)
    assert match, f"{line!r} not in the exposition"
    return float(match.group(1))


def test_scrape_adds_up_across_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"stale")  # a crashed earlier run's file
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.prepare_multiprocess(folder)
    try:
        assert not (folder / "counter_999999.db").exists()
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker, args=(n, 10 * n)) for n in (2, 3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
            assert p.exitcode == 0
        text = metrics.exposition().decode()
    finally:
        os.environ.pop(metrics.MULTIPROC_ENV, None)
    assert _value(text, 'archiver_pipeline_stage_seconds_count{stage="claim"}') == 5
    assert _value(text, 'archiver_pipeline_stage_seconds_bucket{le="0.025",stage="claim"}') == 5
    assert (
        _value(text, 'archiver_store_calls_total{op="get",store="state",worker="processor"}')
        == 50
    )
    # A gauge sampled at scrape time is the latest sample, not a sum of processes.
    assert _value(text, "archiver_index_lag") in (2, 3)
    # Without the folder, the process's own registry answers (the single-process default).
    assert metering.STAGE_SECONDS._name.encode() in metrics.exposition()
