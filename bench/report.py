"""Report benchmark: one FINRA report over N records on real Elasticsearch and MinIO.

    eval "$(scripts/services env)"; .venv/bin/python bench/report.py [--n 1000000] \
        [--sample 10000] [--full-lock] [--concurrency 32]

Seeds (once; the buckets and index are named after N and kept, so a second run reuses
them — ``--fresh`` seeds again) an archive the way the service leaves it: one record
object per record in the evidence bucket (write-once, GOVERNANCE-locked, PUT with bounded
concurrency), one ``record`` leaf per object in the proof log (appended in batches), and
one index document per record (bulk-indexed) carrying the leaf index, number, origin,
direction, subject pseudonym, policy and retain-until. Then it signs a checkpoint and times
``ReportGatherer.gather`` (sampled lock check) and the pure pipeline + PDF + signature,
and, with ``--full-lock``, a second gather reading every object's lock. Target: the
sampled report under 60 s at N = 1,000,000.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file, bench/ would shadow the ``search`` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import hashlib
import os
import resource
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from archiver.keyspace import record_key
from archiver.ledger.entry import EntryKind, make_entry
from archiver.reporting.gather import ReportRequest
from archiver.runtime import Runtime
from archiver.settings import load_settings
from archiver.store.port import LockMode, Retention
from reports.facts import Regulation

NUMBERS = ("106540352242922", "106540352242923", "106540352242924", "106540352242925")
ORIGINS = (("customer", "inbound"), ("business_app", "outbound"),
           ("business_api", "outbound"), ("history", "inbound"))


def _b32(raw: bytes) -> str:
    import base64

    return base64.b32encode(raw).decode().rstrip("=").lower()


def _rid(i: int) -> str:
    return "r_" + _b32(hashlib.sha256(b"bench-record-%d" % i).digest()[:20])


def _subject(i: int) -> str:
    return "s_" + _b32(hashlib.sha256(b"bench-subject-%d" % (i % 50_000)).digest()[:20])


def _settings(n: int) -> Any:
    tag = f"bench-report-{n}"
    return load_settings(
        data_dir=Path(tempfile.gettempdir()) / tag, store="s3",
        s3_endpoint=os.environ["ARCHIVER_TEST_S3_ENDPOINT"],
        s3_access_key=os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        s3_secret_key=os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
        evidence_bucket=f"{tag}-ev", state_bucket=f"{tag}-st", workarea_bucket=f"{tag}-wa",
        index="elasticsearch", es_url=os.environ["ARCHIVER_TEST_ES_URL"], es_alias=tag,
        lock_mode="GOVERNANCE", inline_workers=False, app_secrets="bench-secret-0123456789",
    )


def seed(rt: Runtime, n: int, start: datetime, concurrency: int) -> None:
    """Objects (bounded concurrency), log leaves (batches of 1,000), index docs (bulk)."""
    rt.index.ensure_index()
    es = Elasticsearch(rt.settings.es_url)
    span = 28 * 86400
    until = datetime.now(UTC) + timedelta(days=2200)
    retention = Retention(LockMode.GOVERNANCE, until)
    batch = 1000
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for lo in range(0, n, batch):
            ids = range(lo, min(n, lo + batch))

            def put(i: int) -> tuple[int, Any]:
                body = b'{"bench":%d,"pad":"%s"}' % (i, secrets.token_hex(64).encode())
                return i, rt.objects.put(record_key(_rid(i)), body, retention=retention,
                                         fresh=True)

            puts = list(pool.map(put, ids))
            entries = [make_entry(EntryKind.RECORD, time=start + timedelta(seconds=i * span // n),
                                  key=p.key, version_id=p.version_id, sha256=p.sha256,
                                  size=p.size, retain_until=until, record_id=_rid(i),
                                  event="message", policy="default").data for i, p in puts]
            leaves = rt.log.append(entries)
            docs = []
            for (i, _), leaf in zip(puts, leaves, strict=True):
                origin, direction = ORIGINS[i % len(ORIGINS)]
                at = start + timedelta(seconds=i * span // n)
                docs.append({"_index": rt.settings.es_alias, "_id": _rid(i), "_source": {
                    "id": _rid(i), "record_id": _rid(i), "kind": "message", "type": "text",
                    "phone_number_id": NUMBERS[i % len(NUMBERS)], "origin": origin,
                    "direction": direction, "ts": at.isoformat(), "captured_at": at.isoformat(),
                    "subject": _subject(i), "policy": "default",
                    "retain_until": until.isoformat(), "leaf_index": leaf,
                    "message_ref": "m_" + _b32(hashlib.sha256(b"m%d" % i).digest()[:20]),
                }})
            helpers.bulk(es, docs, chunk_size=1000, refresh=False)
            if (lo // batch) % 50 == 0:
                rate = (lo + batch) / (time.monotonic() - t0)
                print(f"  seeded {lo + batch:>9,} ({rate:,.0f} records/s)", flush=True)
    es.indices.refresh(index=rt.settings.es_alias)
    rt.state.put("bench/seeded", str(n).encode())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=10_000)
    ap.add_argument("--full-lock", action="store_true")
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    settings = _settings(args.n)
    rt = Runtime.open(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    seeded = rt.state.get("bench/seeded")
    if seeded is None or int(seeded.value) != args.n:
        print(f"seeding {args.n:,} records …", flush=True)
        t = time.monotonic()
        seed(rt, args.n, start, args.concurrency)
        print(f"seeded in {time.monotonic() - t:,.1f} s", flush=True)
    service = rt.reports
    req = ReportRequest(Regulation.FINRA, start, start + timedelta(days=28), NUMBERS,
                        sample_size=args.sample, seed="bench")
    stages: dict[str, float] = {}
    last = [time.monotonic()]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now

    t = time.monotonic()
    facts = service.gatherer.gather(req, progress)
    gathered = time.monotonic() - t
    t2 = time.monotonic()
    result = service.produce(facts, report_id=f"bench-{secrets.token_hex(4)}")
    produced = time.monotonic() - t2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records in period: {len(facts.records):,}; lock check {facts.lock_check.mode} "
          f"read {facts.lock_check.read:,} of {facts.lock_check.population:,}")
    print("gather stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    print(f"gather {gathered:.1f} s + compute/twin/html/pdf/sign/store {produced:.1f} s "
          f"= {gathered + produced:.1f} s (target < 60 s); peak RSS {rss:,.0f} MiB; "
          f"findings {result['findings']}")
    if args.full_lock:
        full = ReportRequest(Regulation.FINRA, req.start, req.end, NUMBERS, sample_size=None,
                             tree_size=result["tree_size"])
        t = time.monotonic()
        facts = service.gatherer.gather(full)
        print(f"full lock check gather: {time.monotonic() - t:.1f} s "
              f"({facts.lock_check.read:,} objects read)")
    rt.close()


if __name__ == "__main__":
    main()
