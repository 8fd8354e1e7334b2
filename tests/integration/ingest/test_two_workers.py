"""Scale-out: two ``archiver worker`` processes on one MinIO and Elasticsearch share the
captured batches, and no batch, event or record is processed twice.

Each worker logs one ``batch_processed`` line per batch it takes to the end; the two sets
of batch ids must be disjoint, cover every captured batch, and both be non-empty. Then the
archive itself is checked as the crash test checks it: one primary record per event, every
record and raw batch a leaf exactly once, and one index document per message.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from archiver.ingest.rawbatch import Delivery
from archiver.keyspace import RAW_PREFIX, RECORDS_PREFIX
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.records.model import Record
from archiver.runtime import Runtime
from search.port import SearchRequest
from tests.conftest import REPO, shared_dir
from tests.support.apps import backend_settings, settings_env

BATCHES = 48


def _deliveries(count: int) -> list[bytes]:
    """Text messages from 12 contacts, each body and wamid its own."""
    template = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_text()
    return [
        template.replace("wamid.", f"wamid.W{i:05d}")
        .replace("16505551234", f"1650555{i % 12:04d}")
        .replace("Does it come in another color?", f"two workers message {i}")
        .encode()
        for i in range(count)
    ]


def _processed(stream: str) -> list[str]:
    """Batch ids of the worker's ``batch_processed`` log lines (JSON lines)."""
    ids = []
    for line in stream.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "batch_processed":
            ids.append(str(event["batch_id"]))
    return ids


@pytest.mark.integration
@pytest.mark.timeout(600)
# "postgres": the same with working state in PostgreSQL (ARCHIVER_STATE=postgres): claims
# and the log's sequencing race on database rows instead of S3 conditional writes.
@pytest.mark.parametrize("state", ["default", "postgres"])
def test_two_worker_processes_share_the_work_without_double_processing(
    request: pytest.FixtureRequest, tmp_path: Path, state: str
) -> None:
    extra: dict[str, str] = {}
    if state == "postgres":
        from tests.support.pg import schema_dsn

        extra = {"state": "postgres", "state_dsn": schema_dsn()}
    settings = backend_settings(
        request, tmp_path / "data", "servers", inline_workers=False, **extra
    )
    runtime = Runtime.open(settings)
    bodies = _deliveries(BATCHES * 3)
    batches = [
        runtime.capture_writer.write(
            [
                Delivery(b, "2026-12-06T00:00:00+00:00", "sha256=x", 0, "application/json")
                for b in bodies[i : i + 3]
            ]
        )
        for i in range(0, len(bodies), 3)
    ]
    assert len(batches) == BATCHES
    env = {**settings_env(settings), "PYTHONPATH": str(REPO), "ARCHIVER_LOG_LEVEL": "INFO"}
    archiver = str(Path(sys.executable).parent / "archiver")
    workers = [
        subprocess.Popen(
            [archiver, "worker"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            if any(w.poll() is not None for w in workers):
                break  # a worker died: the assertions below show its output
            if not runtime.processor.pending_batches() and runtime.follower.lag() == 0:
                break
            time.sleep(1.0)
    finally:
        outputs = []
        for worker in workers:
            worker.send_signal(signal.SIGINT)  # the worker's own KeyboardInterrupt exit
        for worker in workers:
            try:
                out, _ = worker.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                out, _ = worker.communicate()
            outputs.append(out)
    assert runtime.processor.pending_batches() == [], [o[-2000:] for o in outputs]
    assert runtime.follower.lag() == 0

    first, second = (_processed(o) for o in outputs)
    # Each worker finished each batch it took at most once, and no batch was finished by
    # both; together they finished every captured batch, and each took a share.
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert not set(first) & set(second), sorted(set(first) & set(second))[:5]
    assert set(first) | set(second) == {b.batch_id for b in batches}
    assert first and second, (len(first), len(second))

    # The archive: one primary record per event, every record and raw batch one leaf.
    primaries: Counter[str] = Counter()
    record_keys = list(runtime.objects.list_keys(RECORDS_PREFIX))
    for key in record_keys:
        version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
        record = Record.parse(runtime.objects.get(key, version.version_id))
        if record.header["kind"] in ("source", "consent"):
            continue
        primaries[record.header["dedup"]] += 1
    assert len(primaries) == len(bodies)
    assert set(primaries.values()) == {1}
    size = runtime.log.size()
    named = Counter(
        (e.key, e.version_id)
        for e in (parse_entry(d) for d in runtime.log.entries(0, size))
        if e.kind in (EntryKind.RECORD, EntryKind.RAW)
    )
    assert set(named.values()) == {1}
    assert {k for k, _ in named if k and k.startswith(RECORDS_PREFIX)} == set(record_keys)
    assert {k for k, _ in named if k and k.startswith(RAW_PREFIX)} == {b.key for b in batches}
    runtime.index.refresh()
    assert runtime.index.count(SearchRequest(q="\"two workers message\"")) == len(bodies)
