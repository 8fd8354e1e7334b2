"""Proof-log benchmarks. Usage: python bench/log.py [--quick] [--store auto|local|minio]
[--only all|verify] [--objects N]

Prints: leaves integrated/s (hash + compact range, from prepared entry bytes; target
≥100,000/s), full appends/s against the store given by the environment (MinIO via
ARCHIVER_TEST_S3_* if set, else a local folder + SQLite; ``--store`` forces one), verify
throughput against a plain read+SHA-256 of the same objects through the same adapter at
the same concurrency (ratio; target ≥0.5; the two alternate, so that load from other
processes hits both alike) and inclusion-proof latency p50/p95. Medians over repeats.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.ledger import merkle
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer
from archiver.ledger.verify import verify_archive
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore

ORIGIN = "bench.example/log"


def retention() -> Retention:
    return Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1))


def stores(tmp: Path, which: str = "auto") -> tuple[str, ObjectStore, StateStore]:
    ep = os.environ.get("ARCHIVER_TEST_S3_ENDPOINT")
    if which == "minio" and not ep:
        raise SystemExit('--store minio needs ARCHIVER_TEST_S3_*: eval "$(scripts/services env)"')
    if ep and which != "local":
        from archiver.store._s3common import make_client
        from archiver.store.s3 import S3ObjectStore, create_locked_bucket
        from archiver.store.state_s3 import S3StateStore

        client = make_client(
            ep,
            os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
            os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
            secure=False,
        )
        bucket, sbucket = f"bench-{uuid.uuid4().hex[:12]}", f"bench-st-{uuid.uuid4().hex[:12]}"
        create_locked_bucket(client, bucket)
        st = S3StateStore(client, sbucket)
        st.ensure_bucket()
        return f"minio {ep}", S3ObjectStore(client, bucket), st
    from archiver.store.local import LocalObjectStore
    from archiver.store.state_sqlite import SqliteStateStore

    return f"local {tmp}", LocalObjectStore(tmp / "objects"), SqliteStateStore(tmp / "state.db")


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def bench_integrate(n: int, repeats: int) -> float:
    entries = [
        make_entry(
            EntryKind.RECORD,
            time=datetime.now(UTC),
            key=f"records/{i:08d}",
            version_id=uuid.uuid4().hex,
            sha256="ab" * 32,
            size=i,
        ).data
        for i in range(n)
    ]

    def once() -> float:
        t = time.perf_counter()
        cr = merkle.CompactRange()
        cr.extend(map(merkle.hash_leaf, entries))
        cr.root()
        return n / (time.perf_counter() - t)

    return median_of(once, repeats)


def bench_appends(log: TransparencyLog, batch: int, count: int, repeats: int) -> float:
    def once() -> float:
        t = time.perf_counter()
        for i in range(count):
            log.append(
                [
                    make_entry(EntryKind.VERIFY_RUN, time=datetime.now(UTC), run=f"{i}-{j}").data
                    for j in range(batch)
                ]
            )
        return count / (time.perf_counter() - t)

    return median_of(once, repeats)


def bench_verify(
    objects: ObjectStore,
    log: TransparencyLog,
    state: StateStore,
    n: int,
    size: int,
    conc: int,
    repeats: int,
) -> tuple[float, float, float]:
    entries = []

    def put(i: int) -> bytes:
        r = objects.put(f"records/{uuid.uuid4().hex}", os.urandom(size), retention=retention())
        return make_entry(
            EntryKind.RECORD,
            time=datetime.now(UTC),
            key=r.key,
            version_id=r.version_id,
            sha256=r.sha256,
            size=r.size,
        ).data

    with ThreadPoolExecutor(conc) as pool:
        entries = list(pool.map(put, range(n)))
    for i in range(0, n, 500):
        log.append(entries[i : i + 500])
    key = Signer.generate(ORIGIN)
    CheckpointSigner(log, key, objects, state).sign_if_grown()
    import json as _json

    idents = [(_json.loads(e)["key"], _json.loads(e)["version_id"]) for e in entries]

    def plain() -> float:
        t = time.perf_counter()
        with ThreadPoolExecutor(conc) as pool:
            list(pool.map(lambda kv: hashlib.sha256(objects.get(*kv)).hexdigest(), idents))
        return n / (time.perf_counter() - t)

    def ver() -> float:
        t = time.perf_counter()
        findings = verify_archive(log, objects, [key.verifier], concurrency=conc).findings
        assert not findings, findings[:3]
        return n / (time.perf_counter() - t)

    pairs = [(plain(), ver()) for _ in range(repeats)]
    p = statistics.median(x for x, _ in pairs)
    v = statistics.median(y for _, y in pairs)
    return p, v, v / p


def bench_proofs(log: TransparencyLog, count: int) -> tuple[float, float]:
    import random

    size = log.size()
    lat = []
    for _ in range(count):
        i = random.randrange(size)
        t = time.perf_counter()
        log.inclusion_proof(i, size)
        lat.append(time.perf_counter() - t)
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.95)] * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--store", choices=("auto", "local", "minio"), default="auto")
    ap.add_argument("--only", choices=("all", "verify"), default="all")
    ap.add_argument("--objects", type=int, default=None, help="objects in the verify run")
    args = ap.parse_args(argv)
    q = args.quick
    repeats = 3
    if args.only == "all":
        rate = bench_integrate(50_000 if q else 200_000, repeats)
        print(f"leaves integrated/s (hash+compact range): {rate:,.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        where, objects, state = stores(Path(tmp), args.store)
        print(f"store: {where}")
        log = TransparencyLog(objects, state, ORIGIN, retention)
        for batch in (1, 100) if args.only == "all" else ():
            aps = bench_appends(log, batch, 20 if q else 60, repeats)
            print(f"appends/s, batch {batch:>3}: {aps:,.1f}  ({aps * batch:,.0f} entries/s)")
        n = args.objects or (300 if q else 2000)
        for conc in (16,):
            vlog = TransparencyLog(objects, state, ORIGIN, retention, prefix=f"vlog{conc}/")
            p, v, r = bench_verify(objects, vlog, state, n, 4096, conc, repeats)
            print(
                f"verify ({n} x 4 KiB objects, {conc} threads): plain read+sha256 {p:,.0f} obj/s, "
                f"verify {v:,.0f} obj/s, ratio {r:.2f}"
            )
        if args.only != "all":
            return
        cold = TransparencyLog(objects, state, ORIGIN, retention)
        p50, p95 = bench_proofs(cold, 200)
        print(
            f"inclusion proof latency (size {cold.size()}, fresh reader): "
            f"p50 {p50:.2f} ms, p95 {p95:.2f} ms"
        )


if __name__ == "__main__":
    main()
