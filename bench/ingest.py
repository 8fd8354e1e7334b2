"""Ingest benchmark: webhook deliveries per second end to end against real MinIO.

Phase 1 — capture: the app runs under uvicorn in its own process (S3 store on MinIO,
Elasticsearch index, processing off so the front door is measured alone); a load
generator in this process keeps C connections busy with signed webhook POSTs (genuine
fixture bodies with unique message ids) for D seconds and records each answer's latency.
Every answer must be 200: a 200 means the body is durable in MinIO under retention.

Ceiling — in the same run, the same bodies are PUT straight into a MinIO bucket with the
same client library (minio-py) at the same concurrency: the naive "one PUT per delivery"
design. The target is >= 1,000 deliveries/s, p99 < 100 ms, and >= 1.0x that ceiling.

Open loop — deliveries offered at a fixed ``--rate`` (default 1,000/s, the target) whatever
the answers do, as Meta sends them; each latency counts from when the delivery was due, so
queueing for a connection is included. The closed-loop runs above measure the most the
service takes; this one the latency at the target rate.

Phase 2 — capture to indexed: ``archiver worker`` processes what phase 1 captured and the
index follows; records per second from the first capture to the last record indexed.

Usage: eval "$(scripts/services env)"; python bench/ingest.py [--seconds 20] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ARCHIVER_SHARED_DIR", REPO.parent / "shared"))
SECRET = "bench-app-secret-0123456789abcdef"  # noqa: S105 - a throwaway secret on loopback
FIXTURES = ["messages_text.json", "statuses_delivered.json", "smb_message_echoes.json",
            "messages_image.json", "messages_reaction.json"]  # fmt: skip


def bodies(count: int, start: int = 0) -> list[bytes]:
    root = SHARED / "fixtures" / "whatsapp"
    templates = [(root / name).read_text() for name in FIXTURES]
    return [
        templates[i % len(templates)].replace("wamid.", f"wamid.B{i:08d}").encode()
        for i in range(start, start + count)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def archive_env(
    unique: str, *, inline_workers: bool, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a fresh archive on the test MinIO and Elasticsearch (buckets and
    index alias named by ``unique``), plus ``extra``, initialised with ``archiver init``."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ARCHIVER_") or k.startswith("ARCHIVER_TEST")
    }
    env.update({
        "ARCHIVER_DATA_DIR": str(data_dir), "ARCHIVER_STORE": "s3",
        "ARCHIVER_S3_ENDPOINT": os.environ["ARCHIVER_TEST_S3_ENDPOINT"],
        "ARCHIVER_S3_ACCESS_KEY": os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        "ARCHIVER_S3_SECRET_KEY": os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
        "ARCHIVER_EVIDENCE_BUCKET": f"bench-ev-{unique}",
        "ARCHIVER_STATE_BUCKET": f"bench-st-{unique}",
        "ARCHIVER_INDEX": "elasticsearch", "ARCHIVER_ES_URL": os.environ["ARCHIVER_TEST_ES_URL"],
        "ARCHIVER_ES_ALIAS": f"bench-{unique}", "ARCHIVER_APP_SECRETS": SECRET,
        "ARCHIVER_LOCK_MODE": "GOVERNANCE",
        "ARCHIVER_INLINE_WORKERS": "true" if inline_workers else "false",
        "ARCHIVER_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    env.update(extra or {})
    subprocess.run([sys.executable, "-m", "archiver.cli", "init"], env=env, check=True,
                   cwd=REPO, capture_output=True)  # fmt: skip
    return env


def start_server(
    env: dict[str, str], port: int, *, workers: int = 1, command: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """The app under uvicorn (uvloop, httptools), or ``command`` in its place."""
    return subprocess.Popen(
        command or [sys.executable, "-m", "uvicorn", "--factory", "archiver.api.app:create_app",
         "--port", str(port), "--log-level", "warning", "--no-access-log",
         "--loop", "uvloop", "--http", "httptools", "--workers", str(workers)],
        env=env, cwd=REPO,
    )  # fmt: skip


def wait_for_port(port: int, server: subprocess.Popen[bytes], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                return False
            time.sleep(0.2)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _client(
    port: int,
    requests: list[bytes],
    latencies: list[float],
    statuses: dict[int, int],
    stop_at: float,
    counter: list[int],
) -> None:
    """One keep-alive HTTP/1.1 connection; minimal parsing keeps the generator cheap."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.monotonic() < stop_at:
            request = requests[(counter[0] + i) % len(requests)]
            counter[0] += 1
            i += 1
            t0 = time.perf_counter()
            status = await _exchange(reader, writer, request)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def signed_requests(payloads: list[bytes]) -> list[bytes]:
    requests = []
    for body in payloads:
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        requests.append(
            b"POST /webhooks/whatsapp HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            + f"X-Hub-Signature-256: sha256={signature}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return requests


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one request on a keep-alive connection, read the answer; its status."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return int(head[9:12])


def rate_phase(
    port: int, payloads: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Open loop: delivery i is due at ``start + i / rate`` whatever the answers do (Meta
    does not wait for us), and its latency counts from when it was due, so time spent
    queued for a free connection is in the figure (no coordinated omission)."""
    requests = signed_requests(payloads)
    total = min(len(requests), int(rate * seconds))
    latencies: list[float] = []
    lags: list[float] = []  # due -> written: the client's own delay (queue + event loop)
    statuses: dict[int, int] = {}

    async def run() -> float:
        due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

        async def connection() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while True:
                    i, t_due = await due.get()
                    if i < 0:
                        return
                    lags.append(time.perf_counter() - t_due)
                    status = await _exchange(reader, writer, requests[i])
                    latencies.append(time.perf_counter() - t_due)
                    statuses[status] = statuses.get(status, 0) + 1
            finally:
                writer.close()

        workers = [asyncio.create_task(connection()) for _ in range(connections)]
        start = time.perf_counter()
        sent = 0
        while sent < total:
            now = time.perf_counter()
            while sent < total and start + sent / rate <= now:
                due.put_nowait((sent, start + sent / rate))
                sent += 1
            await asyncio.sleep(0.001)
        for _ in workers:
            due.put_nowait((-1, 0.0))
        await asyncio.gather(*workers)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {
        "offered_per_second": rate,
        "deliveries": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * pct(latencies, 99),
        "p999_ms": 1000 * pct(latencies, 99.9),
        "max_ms": 1000 * max(latencies),
        "client_lag_p50_ms": 1000 * statistics.median(lags),
        "client_lag_p99_ms": 1000 * pct(lags, 99),
        "over_1s": sum(1 for x in latencies if x > 1.0),
        "statuses": statuses,
    }


def bombardier_path() -> str | None:
    """bombardier (Go; ``go install github.com/codesenberg/bombardier@v1.2.6``): a rate-
    limited load generator that costs little CPU, unlike the asyncio client."""
    found = shutil.which("bombardier")
    home = Path.home() / "go" / "bin" / "bombardier"
    return found or (str(home) if home.exists() else None)


def rate_phase_bombardier(
    port: int, payload: bytes, rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """The open-loop run with bombardier: one signed body (capture stores every delivery
    byte for byte, duplicate or not), ``rate`` requests/s over ``connections``. Its
    latency counts from each request's send; the achieved rate shows whether the sends
    kept the schedule."""
    work = Path(tempfile.mkdtemp(prefix="bench-bombardier-"))
    (work / "body.json").write_bytes(payload)
    signature = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    out = subprocess.run(
        [str(bombardier_path()), "-c", str(connections), "-r", str(int(rate)),
         "-d", f"{int(seconds)}s", "-m", "POST", "-f", str(work / "body.json"),
         "-H", "Content-Type: application/json",
         "-H", f"X-Hub-Signature-256: sha256={signature}",
         "-l", "-p", "r", "-o", "json", f"http://127.0.0.1:{port}/webhooks/whatsapp"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = json.loads(out)["result"]
    latency = result["latency"]
    total = sum(int(result.get(k, 0)) for k in ("req1xx", "req2xx", "req3xx", "req4xx", "req5xx"))
    return {
        "client": "bombardier",
        "offered_per_second": rate,
        "deliveries": int(result["req2xx"]),
        "per_second": float(result["rps"]["mean"]),
        "p50_ms": float(latency["percentiles"]["50"]) / 1000,
        "p99_ms": float(latency["percentiles"]["99"]) / 1000,
        "p999_ms": float(latency["percentiles"].get("99.9", latency["max"])) / 1000,
        "max_ms": float(latency["max"]) / 1000,
        "client_lag_p50_ms": 0.0,
        "client_lag_p99_ms": 0.0,
        "statuses": {200: int(result["req2xx"])}
        | ({0: total - int(result["req2xx"]) + int(result.get("others", 0))}
           if total != int(result["req2xx"]) or result.get("others") else {}),
    }


def capture_phase(
    port: int, payloads: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    requests = signed_requests(payloads)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = [0]

    async def run() -> float:
        start = time.monotonic()
        await asyncio.gather(
            *(
                _client(port, requests, latencies, statuses, start + seconds, counter)
                for _ in range(concurrency)
            )
        )
        return time.monotonic() - start

    elapsed = asyncio.run(run())
    return {
        "deliveries": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * pct(latencies, 99),
        "over_1s": sum(1 for x in latencies if x > 1.0),
        "statuses": statuses,
    }


WRK_SCRIPT = r"""
-- Each wrk thread sends its own share of the lines once (thread k: lines k, k+T, ...),
-- so no delivery is sent twice and phase 2 measures distinct events.
local counter = 0
local threads = {}
setup = function(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
local reqs = {}
local i = 0
init = function(args)
  local n = 0
  local total = tonumber(args[2])
  for line in io.lines(args[1]) do
    if n % total == id then
      local sig, body = line:match("^(%x+)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/webhooks/whatsapp",
        {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = "sha256=" .. sig}, body)
    end
    n = n + 1
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
"""


def capture_phase_wrk(
    port: int, payloads: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    """The same load from wrk (a C load generator), so the client costs little CPU."""
    import re

    work = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    lines = []
    for body in payloads:
        compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
        signature = hmac.new(SECRET.encode(), compact, hashlib.sha256).hexdigest()
        lines.append(signature + "\t" + compact.decode())
    (work / "requests.txt").write_text("\n".join(lines) + "\n")
    (work / "post.lua").write_text(WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s",
         "-s", str(work / "post.lua"), f"http://127.0.0.1:{port}",
         "--", str(work / "requests.txt"), "2"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "deliveries": total,
        "per_second": rate,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "statuses": {200: total - (int(bad.group(1)) if bad else 0)}
        | ({0: int(bad.group(1))} if bad else {}),
        "socket_errors": errors.group(1) if errors else None,
    }


def ceiling_phase(payloads: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """Plain minio-py PUTs of the same bodies, one per delivery, same concurrency."""
    from minio import Minio

    client = Minio(
        os.environ["ARCHIVER_TEST_S3_ENDPOINT"],
        os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
        secure=False,
    )
    bucket = f"ceiling-{uuid.uuid4().hex[:10]}"
    client.make_bucket(bucket, object_lock=True)
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = [0]

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                i = counter[0]
                counter[0] += 1
            body = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            client.put_object(bucket, f"raw/{i:09d}", io.BytesIO(body), len(body))
            with lock:
                latencies.append(time.perf_counter() - t0)

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    elapsed = time.monotonic() - start
    return {
        "puts": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * pct(latencies, 99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-indexing", action="store_true")
    parser.add_argument(
        "--rate", type=float, default=1000.0,
        help="offered deliveries/s of the open-loop runs (0: skip them)",
    )
    parser.add_argument("--rate-connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
        help="load generator: wrk (C, apt package wrk) or the built-in asyncio client",
    )
    args = parser.parse_args()
    for var in ("ARCHIVER_TEST_S3_ENDPOINT", "ARCHIVER_TEST_ES_URL"):
        if var not in os.environ:
            print(f'{var} is not set: eval "$(scripts/services env)" first', file=sys.stderr)
            return 2
    unique = uuid.uuid4().hex[:10]
    env = archive_env(unique, inline_workers=False)
    port = free_port()
    server = start_server(env, port, workers=args.workers)
    try:
        if not wait_for_port(port, server):
            print("server did not start", file=sys.stderr)
            return 1
        # Unique bodies for every delivery the run can send, so phase 2 indexes real work.
        payloads = bodies(int(args.seconds * args.repeats * 2500))
        runs = []
        ceilings = []
        t_first = time.time()
        for _ in range(args.repeats):
            phase = capture_phase_wrk if args.client == "wrk" else capture_phase
            share = len(payloads) // args.repeats
            mine = payloads[len(runs) * share : (len(runs) + 1) * share]
            runs.append(phase(port, mine, args.concurrency, args.seconds))
            ceilings.append(ceiling_phase(payloads, args.concurrency, args.seconds))
        # Open loop at the target rate: the p99 Meta would see at 1,000 deliveries/s.
        fixed = []
        if args.rate > 0:
            offset = len(payloads)
            for k in range(args.repeats):
                mine = bodies(int(args.rate * args.seconds), offset + k * 10**6)
                if bombardier_path() is not None:
                    fixed.append(rate_phase_bombardier(
                        port, mine[0], args.rate, args.seconds, args.rate_connections))
                else:
                    fixed.append(
                        rate_phase(port, mine, args.rate, args.seconds, args.rate_connections)
                    )
        captured = sum(r["deliveries"] for r in runs) + sum(r["deliveries"] for r in fixed)
        median = {
            k: statistics.median(r[k] for r in runs) for k in ("per_second", "p50_ms", "p99_ms")
        }
        ceiling = {
            k: statistics.median(c[k] for c in ceilings) for k in ("per_second", "p50_ms", "p99_ms")
        }
        print(json.dumps(
            {"capture_runs": runs, "ceiling_runs": ceilings, "fixed_rate_runs": fixed}, indent=1
        ))
        print(
            "\n=== capture (signature + durable MinIO write + 200), "
            f"concurrency {args.concurrency}, {args.repeats} x {args.seconds:.0f} s ==="
        )
        print(f"deliveries/s  median {median['per_second']:8.0f}   (target >= 1000)")
        print(f"latency p50   median {median['p50_ms']:8.1f} ms")
        print(f"latency p99   median {median['p99_ms']:8.1f} ms (target < 100)")
        print(
            f"naive ceiling (minio-py PUT per delivery) {ceiling['per_second']:8.0f} /s, "
            f"p50 {ceiling['p50_ms']:.1f} ms, p99 {ceiling['p99_ms']:.1f} ms"
        )
        print(
            f"ratio capture / ceiling: {median['per_second'] / ceiling['per_second']:.2f}x"
            " (target >= 1.0)"
        )
        if fixed:
            at = {
                k: statistics.median(r[k] for r in fixed)
                for k in ("per_second", "p50_ms", "p99_ms", "p999_ms", "max_ms")
            }
            print(
                f"\n=== open loop at {args.rate:.0f} deliveries/s offered "
                f"({fixed[0].get('client', 'asyncio client')}, "
                f"{args.rate_connections} connections, "
                f"{args.repeats} x {args.seconds:.0f} s; latency from "
                + ("each send" if fixed[0].get("client") == "bombardier" else "when each was due")
                + ") ==="
            )
            print(f"achieved      median {at['per_second']:8.0f} /s")
            print(f"latency p50   median {at['p50_ms']:8.1f} ms")
            print(f"latency p99   median {at['p99_ms']:8.1f} ms (target < 100)")
            print(f"latency p99.9 median {at['p999_ms']:8.1f} ms, max {at['max_ms']:.1f} ms")
            lag = statistics.median(r["client_lag_p99_ms"] for r in fixed)
            print(f"of which the client's own send delay: p99 median {lag:.1f} ms")
        non_200 = {
            s: n for r in [*runs, *fixed] for s, n in r["statuses"].items() if s != 200
        }
        print(f"non-200 answers: {non_200 or 'none'}")
        if args.skip_indexing:
            return 0
        # Phase 2: process and index everything captured.
        worker = subprocess.Popen(
            [sys.executable, "-m", "archiver.cli", "worker"], env=env, cwd=REPO
        )
        try:
            from elasticsearch import Elasticsearch

            es = Elasticsearch(os.environ["ARCHIVER_TEST_ES_URL"])
            t0 = time.time()
            indexed = 0
            settled = 0
            last = -1
            t_last_change = t0  # when the count last moved: the settle polls are not work
            while time.time() - t0 < 1800:
                time.sleep(5)
                try:
                    es.indices.refresh(index=f"bench-{unique}")
                    indexed = int(es.count(index=f"bench-{unique}")["count"])
                except Exception:  # noqa: S112 - the index is created by the first batch
                    continue
                print(f"  indexed {indexed} documents after {time.time() - t0:.0f} s", flush=True)
                # Done when the index has caught up with the log twice in a row and the
                # count no longer moves (every raw batch processed and indexed).
                settled = settled + 1 if _lag_zero(env) and indexed == last else 0
                if indexed != last:
                    t_last_change = time.time()
                last = indexed
                if settled >= 2:
                    break
            elapsed = time.time() - t0
            busy = max(t_last_change - t0, 1e-9)
            print(
                f"\n=== capture to indexed: {indexed} message documents from {captured} deliveries "
                f"in {elapsed:.0f} s of processing: {indexed / elapsed:.0f} records/s "
                f"(since first capture: {indexed / (time.time() - t_first):.0f}/s) ==="
            )
            # Every delivery is one record (statuses and reactions fold into documents),
            # and the last count change bounds the work (the polls after it only settle).
            print(
                f"    until the last document: {busy:.0f} s -> {indexed / busy:.0f} documents/s, "
                f"{captured / busy:.0f} deliveries/s (one record each here; "
                f"5 s polls: +-{5 / busy:.0%})"
            )
        finally:
            worker.terminate()
            worker.wait(30)
        return 0
    finally:
        server.terminate()
        server.wait(30)


def _lag_zero(env: dict[str, str]) -> bool:
    out = subprocess.run([sys.executable, "-m", "archiver.cli", "index", "status"], env=env,
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip().endswith("lag=0")


if __name__ == "__main__":
    sys.exit(main())
