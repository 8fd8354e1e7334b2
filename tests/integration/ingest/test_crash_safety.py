"""Crash safety: a separate processing worker is SIGKILLed at random points — by itself at
named points (right after a record write and before its log step, before and after the
log append) and by this test on a random timer — at least 20 times. Afterwards every
event is recorded exactly once, every record and raw batch is a leaf exactly once, and
nothing acknowledged was lost.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from archiver.ingest.rawbatch import Delivery
from archiver.keyspace import RECORDS_PREFIX
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.records.model import Record
from archiver.runtime import Runtime
from archiver.whatsapp import parse_delivery
from tests.conftest import REPO, shared_dir
from tests.support.apps import backend_settings, settings_env

FIXTURES = [
    "messages_text.json",
    "messages_image.json",
    "statuses_delivered.json",
    "smb_message_echoes.json",
    "messages_reaction.json",
    "messages_group_text.json",
    "history.json",
    "smb_app_state_sync.json",
]


def _deliveries(count: int) -> list[bytes]:
    """Fixture bodies made unique per copy (wamids and ids get a suffix)."""
    root = shared_dir() / "fixtures" / "whatsapp"
    bodies = []
    for i in range(count):
        text = (root / FIXTURES[i % len(FIXTURES)]).read_text()
        bodies.append(
            text.replace("wamid.", f"wamid.C{i:04d}").replace('"id": "', f'"id": "u{i}').encode()
        )
    return bodies


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        # Each of the ~50 worker starts connects to MinIO; a busy 2-core machine needs time.
        pytest.param("servers", marks=[pytest.mark.integration, pytest.mark.timeout(1200)]),
    ],
)
def test_worker_killed_at_random_points_records_everything_once(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """``embedded``: local folder store; ``servers``: real MinIO (fresh buckets) and
    Elasticsearch, the worker reaching them through the same ``ARCHIVER_*`` settings."""
    data = tmp_path / "data"
    settings = backend_settings(request, data, backend, inline_workers=False)
    runtime = Runtime.open(settings)
    bodies = _deliveries(90)
    rng = random.Random(20261125)
    batches = []
    i = 0
    while i < len(bodies):
        n = rng.randint(1, 4)
        chunk = bodies[i : i + n]
        # Every fifth batch re-delivers an earlier body: a duplicate, not a new event.
        if batches and rng.random() < 0.2:
            chunk = [*chunk, bodies[rng.randrange(0, i)]]
        batch = runtime.capture_writer.write(
            [
                Delivery(b, "2026-11-25T00:00:00+00:00", "sha256=x", 0, "application/json")
                for b in chunk
            ]
        )
        batches.append(batch)
        i += n
    expected_dedup: set[str] = set()
    for body in bodies:
        for event in parse_delivery(body).events:
            business = event.phone_number_id or f"waba:{event.waba_id}"
            expected_dedup.add(runtime.pseudo.token("d_", "dedup", business, event.dedup_key))

    kills = 0
    env = {**settings_env(settings), "PYTHONPATH": str(REPO)}
    for attempt in range(400):
        probability = 0.12 if kills < 24 else 0.0
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.crash_worker",
                str(data),
                str(attempt),
                str(probability),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        timer_kill = kills < 24 and rng.random() < 0.4
        # The timer starts once the worker is ready (imports and store connection take a
        # few seconds on a busy machine), so timer kills land in the middle of processing.
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready", or EOF if it died first
        deadline = time.monotonic() + (rng.uniform(0.3, 2.0) if timer_kill else 120)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert proc.returncode in (0, 3), proc.stderr.read().decode()[-3000:]
        if proc.returncode == 0 and kills >= 20:
            break
        time.sleep(0.6)  # let a dead owner's claim expire
    assert kills >= 20, kills
    assert runtime.processor.pending_batches() == []

    # Exactly one primary record per event; duplicates only as source links.
    primaries: Counter[str] = Counter()
    record_keys = list(runtime.objects.list_keys(RECORDS_PREFIX))
    for key in record_keys:
        version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
        record = Record.parse(runtime.objects.get(key, version.version_id))
        if record.header["kind"] in ("source", "consent") or "conflict" in record.header["flags"]:
            continue
        primaries[record.header["dedup"]] += 1
    assert set(primaries) == expected_dedup
    assert all(count == 1 for count in primaries.values()), primaries.most_common(3)

    # Every stored record and raw batch is a leaf exactly once; nothing else repeats.
    size = runtime.log.size()
    leaves = [parse_entry(d) for d in runtime.log.entries(0, size)]
    assert len(leaves) == size
    named = Counter(
        (e.key, e.version_id) for e in leaves if e.kind in (EntryKind.RECORD, EntryKind.RAW)
    )
    assert all(count == 1 for count in named.values()), named.most_common(3)
    logged_records = {k for k, _ in named if k and k.startswith(RECORDS_PREFIX)}
    assert logged_records == set(record_keys)
    logged_raw = {k for k, _ in named if k and k.startswith("raw/")}
    assert logged_raw == {b.key for b in batches}
    assert len({e.data for e in leaves}) == size
    # Every subject's data key reached the log exactly once, however the worker died.
    created = Counter(
        str(e.fields.get("key_id")) for e in leaves if e.kind is EntryKind.KEY_CREATED
    )
    subject_keys = set()
    for name in runtime.state.list("keys/subject/"):
        value = runtime.state.get(name)
        assert value is not None
        subject_keys.update(json.loads(value.value)["key_ids"])
    assert set(created) == subject_keys
    assert all(count == 1 for count in created.values()), created.most_common(3)
    print(
        json.dumps(
            {
                "backend": backend,
                "kills": kills,
                "batches": len(batches),
                "records": len(record_keys),
                "leaves": size,
            }
        )
    )
