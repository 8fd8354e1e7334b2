"""Report benchmark: one FINRA report over N records on real Elasticsearch and MinIO.

    export ARCHIVER_SERVICES_DIR=/work/bench-data/report-perf BENCH_DATA=/work/bench-data
    scripts/services start all; eval "$(scripts/services env)"
    .venv/bin/python bench/report.py --n 1000000 --seed-only      # once (resumable)
    .venv/bin/python bench/report.py --n 1000000 --sample 2000 --runs 1   # x3, cold
    .venv/bin/python bench/report.py --n 1000000 --runs 1 --lock-rate 10000 [--full-lock]

Seeds once into buckets and an index named after N (``bench-report-N-*``; the data dir
under ``$BENCH_DATA``, the servers' data under ``$ARCHIVER_SERVICES_DIR``, both outside
git), in three resumable phases: record objects as GOVERNANCE-locked versions (tars that
MinIO extracts, ``snowball``: ~350 objects/s on the shared machine against ~120 for single
PUTs), one listing of their version ids, then one ``record`` leaf per object appended
10,000 at a time with the block's index documents bulk-indexed (~1,250 records/s). Then
it times ``ReportGatherer.gather`` per stage and ``ReportService.produce`` (compute, twin,
HTML, PDF, signature, store) ``--runs`` times in one process (later runs find the log's
bundle cache warm: for cold figures run ``--runs 1`` three times). ``--lock-rate K``
measures the lock-read rate on a sample of K and extrapolates the full check; ``--full-lock``
times the full check itself. Target: the sampled report under 60 s at N = 1,000,000.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file, bench/ would shadow the ``search`` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import hashlib
import io
import os
import resource
import secrets
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, helpers

from archiver.consent import ConsentView
from archiver.keyspace import COEXISTENCE_VIEW_CURSOR_KEY, record_key
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.follow import follow_to_end
from archiver.reporting.gather import ReportRequest
from archiver.runtime import Runtime
from archiver.settings import load_settings
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
        data_dir=Path(os.environ.get("BENCH_DATA", tempfile.gettempdir())) / tag, store="s3",
        s3_endpoint=os.environ["ARCHIVER_TEST_S3_ENDPOINT"],
        s3_access_key=os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        s3_secret_key=os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
        evidence_bucket=f"{tag}-ev", state_bucket=f"{tag}-st", workarea_bucket=f"{tag}-wa",
        index="elasticsearch", es_url=os.environ["ARCHIVER_TEST_ES_URL"], es_alias=tag,
        lock_mode="GOVERNANCE", inline_workers=False, app_secrets="bench-secret-0123456789",
    )


UNTIL = datetime(2033, 1, 1, tzinfo=UTC)  # fixed, so a resumed seed writes the same leaves
BLOCK = 10_000  # records per block: one log append and one ES bulk each


def _body(i: int) -> bytes:
    # Deterministic, so a block re-PUT after a crash finds the same bytes already there.
    return b'{"bench":%d,"pad":"%s"}' % (i, hashlib.sha256(b"pad%d" % i).hexdigest().encode())


def _minio(n: int) -> Any:
    from minio import Minio

    s = _settings(n)
    endpoint = s.s3_endpoint.split("//", 1)[-1]
    return Minio(endpoint, access_key=os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
                 secret_key=os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
                 secure=s.s3_endpoint.startswith("https"))


def _put_block(n: int, lo: int, hi: int) -> None:
    """Records lo..hi-1 as GOVERNANCE-locked object versions, in one PUT: a tar that MinIO
    extracts into one object per member (``snowball``), each a versioned object with the
    request's retention, as a locked PutObject leaves it (what the lock check reads).
    Object PUTs one by one ran at ~120 records/s on the shared machine; this ~5x faster."""
    from minio.commonconfig import GOVERNANCE, SnowballObject
    from minio.retention import Retention as MinioRetention

    objs = []
    for i in range(lo, hi):
        body = _body(i)
        objs.append(SnowballObject(record_key(_rid(i)), data=io.BytesIO(body), length=len(body)))
    _minio(n).upload_snowball_objects(_settings(n).evidence_bucket, objs,
                                      retention=MinioRetention(GOVERNANCE, UNTIL),
                                      compression=False)


def seed(rt: Runtime, n: int, start: datetime, procs: int) -> None:
    """Three resumable phases (state keys ``bench/objects-upto``, ``bench/seeded-upto``):
    record objects (``procs`` tars of 5,000 in flight), one listing of their version ids,
    then log leaves appended a block (10,000) at a time (``once_since``: a resumed block is
    never appended twice) with the block's index documents bulk-indexed."""
    from concurrent.futures import ProcessPoolExecutor

    rt.index.ensure_index()
    es = Elasticsearch(rt.settings.es_url, request_timeout=300)
    span = 28 * 86400
    t0 = time.monotonic()
    got = rt.state.get("bench/objects-upto")
    made = int(got.value) if got else 0
    tar = 5_000
    with ProcessPoolExecutor(procs) as pool:
        blocks = [(lo, min(n, lo + tar)) for lo in range(made, n, tar)]
        for (_lo, hi), fut in zip(blocks, [pool.submit(_put_block, n, lo, hi)
                                          for lo, hi in blocks], strict=True):
            fut.result()  # in order, so objects-upto never passes a block not yet written
            rt.state.put("bench/objects-upto", str(hi).encode())
            print(f"  objects {hi:>9,} ({(hi - made) / (time.monotonic() - t0):,.0f}/s)",
                  flush=True)
    t1 = time.monotonic()
    versions = {v.key: v.version_id for v in rt.objects.list_versions("records/")
                if not v.is_delete_marker}
    print(f"  listed {len(versions):,} versions in {time.monotonic() - t1:.1f} s", flush=True)
    got = rt.state.get("bench/seeded-upto")
    done = int(got.value) if got else 0
    base_got = rt.state.get("bench/seeded-base")
    if base_got is None:
        base = rt.log.size()
        rt.state.put("bench/seeded-base", str(base).encode())
    else:
        base = int(base_got.value)
    t2, first = time.monotonic(), done
    bulk = ThreadPoolExecutor(1)  # a block's ES bulk overlaps the next block's log append
    pending: Any = None
    for lo in range(done, n, BLOCK):
        hi = min(n, lo + BLOCK)
        entries = []
        for i in range(lo, hi):
            key, body = record_key(_rid(i)), _body(i)
            entries.append(make_entry(
                EntryKind.RECORD, time=start + timedelta(seconds=i * span // n), key=key,
                version_id=versions[key], sha256=hashlib.sha256(body).hexdigest(),
                size=len(body), retain_until=UNTIL, record_id=_rid(i), event="message",
                policy="default",
            ).data)  # fmt: skip
        leaves = rt.log.append(entries, once_since=base + lo)
        docs = []
        for i, leaf in zip(range(lo, hi), leaves, strict=True):
            origin, direction = ORIGINS[i % len(ORIGINS)]
            at = (start + timedelta(seconds=i * span // n)).isoformat()
            docs.append({"_index": rt.settings.es_alias, "_id": _rid(i), "_source": {
                "id": _rid(i), "record_id": _rid(i), "kind": "message", "type": "text",
                "phone_number_id": NUMBERS[i % len(NUMBERS)], "origin": origin,
                "direction": direction, "ts": at, "captured_at": at,
                "subject": _subject(i), "policy": "default",
                "retain_until": UNTIL.isoformat(), "leaf_index": leaf,
                "message_ref": "m_" + _b32(hashlib.sha256(b"m%d" % i).digest()[:20]),
            }})
        if pending is not None:
            pending.result()
        pending = bulk.submit(_bulk_then_mark, rt, es, docs, hi)
        rate = (hi - first) / (time.monotonic() - t2)
        print(f"  logged+indexed {hi:>9,} ({rate:,.0f} records/s)", flush=True)
    if pending is not None:
        pending.result()
    es.indices.refresh(index=rt.settings.es_alias)
    rt.state.put("bench/seeded", str(n).encode())


def _bulk_then_mark(rt: Runtime, es: Elasticsearch, docs: list[Any], hi: int) -> None:
    helpers.bulk(es, docs, chunk_size=5000, refresh=False)
    rt.state.put("bench/seeded-upto", str(hi).encode())


def views_current(rt: Runtime) -> None:
    """Bring the log-derived views to the log's end, as the live service's view jobs keep
    them between reports (untimed: a report pays only for what arrived since). The consent
    view runs as it is (it reads only consent records, and the seed has none). The seeded
    records are synthetic bodies with no Coexistence activity, so the Coexistence view's
    cursor is walked to the end without reading them; the live view job reads each
    activity record once, as it arrives."""
    t = time.monotonic()
    ConsentView(log=rt.log, objects=rt.objects, state=rt.state).catch_up()
    follow_to_end(rt.log, rt.state, COEXISTENCE_VIEW_CURSOR_KEY, lambda _leaf, _entry: None)
    print(f"views brought to the log's end in {time.monotonic() - t:.1f} s (untimed)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=10_000)
    ap.add_argument("--full-lock", action="store_true", help="also time a full lock check")
    ap.add_argument("--lock-rate", type=int, default=0,
                    help="measure the lock-read rate on a sample this big; extrapolate")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2, help="object tars in flight")
    ap.add_argument("--seed-only", action="store_true", help="seed (or resume), then stop")
    args = ap.parse_args()
    settings = _settings(args.n)
    rt = Runtime.open(settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    seeded = rt.state.get("bench/seeded")
    if seeded is None or int(seeded.value) != args.n:
        print(f"seeding {args.n:,} records …", flush=True)
        t = time.monotonic()
        seed(rt, args.n, start, args.procs)
        print(f"seeded in {time.monotonic() - t:,.1f} s", flush=True)
    views_current(rt)
    if args.seed_only:
        rt.close()
        return
    service = rt.reports
    req = ReportRequest(Regulation.FINRA, start, start + timedelta(days=28), NUMBERS,
                        sample_size=args.sample, seed="bench")
    totals: list[float] = []
    tree_size = None
    for run in range(1, args.runs + 1):
        stages: dict[str, float] = {}
        last = [time.monotonic()]

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            stages[stage] = stages.get(stage, 0.0) + now - last[0]  # noqa: B023
            last[0] = now  # noqa: B023

        t = time.monotonic()
        facts = service.gatherer.gather(req, progress)
        gathered = time.monotonic() - t
        t2 = time.monotonic()
        result = service.produce(facts, report_id=f"bench-{secrets.token_hex(4)}")
        produced = time.monotonic() - t2
        tree_size = result["tree_size"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        records = sum(c.count for c in facts.summary.counts) if facts.summary else len(
            facts.records)
        totals.append(gathered + produced)
        print(f"run {run}: records in period {records:,}; lock check "
              f"{facts.lock_check.mode} read {facts.lock_check.read:,} of "
              f"{facts.lock_check.population:,}")
        print("  gather stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
        print(f"  gather {gathered:.1f} s + compute/twin/html/pdf/sign/store {produced:.1f} s "
              f"= {gathered + produced:.1f} s (target < 60 s); peak RSS {rss:,.0f} MiB; "
              f"findings {dict(result['findings'])}", flush=True)
    print(f"median of {len(totals)}: {statistics.median(totals):.1f} s", flush=True)
    if args.lock_rate:
        # The full check's rate, measured on a large sample; extrapolated to the population.
        big = ReportRequest(Regulation.FINRA, req.start, req.end, NUMBERS,
                            sample_size=args.lock_rate, seed="bench-rate", tree_size=tree_size)
        seen: dict[str, float] = {}
        mark = [time.monotonic()]

        def timing(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            seen[stage] = seen.get(stage, 0.0) + now - mark[0]
            mark[0] = now

        facts = service.gatherer.gather(big, timing)
        rate = facts.lock_check.read / seen["locks"]
        print(f"lock reads: {facts.lock_check.read:,} in {seen['locks']:.1f} s = {rate:,.0f}"
              f" objects/s; full check of {facts.lock_check.population:,} extrapolated: "
              f"{facts.lock_check.population / rate / 60:.1f} min of lock reads", flush=True)
    if args.full_lock:
        full = ReportRequest(Regulation.FINRA, req.start, req.end, NUMBERS, sample_size=None,
                             tree_size=tree_size)
        t = time.monotonic()
        facts = service.gatherer.gather(full)
        print(f"full lock check gather: {time.monotonic() - t:.1f} s "
              f"({facts.lock_check.read:,} objects read)")
    rt.close()


if __name__ == "__main__":
    main()
