"""Pipeline benchmark: from a webhook's 200 to the message being searchable, on real MinIO
and Elasticsearch.

The app runs as a user runs it (``archiver serve``: uvicorn, inline processing and indexing
workers) on a fresh archive (its own buckets and index alias). One run has four phases:

* closed loop: ``--deliveries`` distinct signed text deliveries (one message each, from
  ``--contacts`` different people) sent once each over ``--concurrency`` connections;
* open loop: ``--rate`` deliveries/s offered for ``--seconds`` whatever the answers do;
* history burst: ``--history`` messages in Meta's ``history`` webhook shape (deliveries of
  ``--history-per-delivery`` messages, threads of several contacts), closed loop;
* ceiling: the naive design, one minio-py PUT per record, same MinIO, same concurrency.

For each phase: capture rate (200s per second), end-to-end records/s (from the first send
to the last message searchable), index lag p50/p99/max (the moment a message is visible in
the index minus the moment its delivery's 200 arrived), and round trips per record of each
kind. Visibility is read from Elasticsearch directly (``_search`` sorted by ``leaf_index``,
every ``--poll`` seconds, no forced refresh), never through the audited API: every message
body carries a run tag and its own number. Round trips are counted inside the server: the
bench starts the app through this file (``--serve``), which wraps the runtime's object
store, state store and index in a counting proxy (per method and per key prefix) and
writes the counts to a file four times a second.

``--repeats`` runs (each on a fresh archive and server); medians are printed at the end, with
each run's ratio to the ceiling measured in that same run. ``--profile DIR`` records the
server with py-spy during the first closed loop (raw collapsed stacks, ``--idle``: where
threads wait counts, since round trips are the suspect) and prints the top inclusive frames.

``--state postgres`` keeps working state in PostgreSQL (``ARCHIVER_STATE=postgres``, a fresh
schema of ``ARCHIVER_TEST_PG_DSN`` per run); round trips are then also counted per side
(``state_pg``: Postgres, ``state_default``: the shreddable prefixes on the state bucket).

Usage: eval "$(scripts/services env)"; python bench/pipeline.py [--repeats 3] [--profile DIR]
       [--state postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and its search.py would hide the
# ``search`` package: take it off, and load the sibling bench's helpers by path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
_spec = importlib.util.spec_from_file_location("bench_ingest", _HERE / "ingest.py")
assert _spec is not None and _spec.loader is not None
_ingest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ingest)
REPO, SHARED, _exchange, archive_env = (
    _ingest.REPO,
    _ingest.SHARED,
    _ingest._exchange,
    _ingest.archive_env,
)
ceiling_phase, free_port, pct, signed_requests = (
    _ingest.ceiling_phase,
    _ingest.free_port,
    _ingest.pct,
    _ingest.signed_requests,
)
start_server, wait_for_port = _ingest.start_server, _ingest.wait_for_port

# -- the server side: the app with counted stores -------------------------------------


class _Counts:
    """Calls per ``kind.method`` and per ``kind.method[prefix]``, dumped to a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self._dump_forever, daemon=True, name="bench-counts").start()

    def add(self, name: str, prefix: str) -> None:
        from archiver.metering import worker_kind

        # The indexer's own share too ("indexer:state.get[index]"): its round trips per
        # record are the follower's cost, apart from the processor's.
        indexer = worker_kind() == "indexer"
        with self.lock:
            self.counts[name] += 1
            self.counts[f"{name}[{prefix}]"] += 1
            if indexer:
                self.counts["indexer:" + name] += 1
                self.counts[f"indexer:{name}[{prefix}]"] += 1

    def _dump_forever(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        while True:
            with self.lock:
                data = dict(self.counts)
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)
            time.sleep(0.25)


class _Counted:
    """Forwards everything to ``inner``; public method calls are counted (one call = one
    round trip for the store ports; ``list`` counts the call, not its pages)."""

    def __init__(self, inner: Any, kind: str, counts: _Counts) -> None:
        self.__dict__["_inner"] = inner
        self.__dict__["_kind"] = kind
        self.__dict__["_counts"] = counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        kind, counts = self._kind, self._counts

        def call(*args: Any, **kwargs: Any) -> Any:
            first = args[0] if args and isinstance(args[0], str) else ""
            counts.add(f"{kind}.{name}", first.split("/", 1)[0] if "/" in first else "-")
            return attr(*args, **kwargs)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._inner, name, value)


def serve_counted(port: int, counts_path: Path) -> None:
    """Run the app like ``archiver serve`` (one process), with counted store ports."""
    import uvicorn

    import archiver.runtime as rt

    counts = _Counts(counts_path)
    for opener, kind in (("open_object_store", "object"), ("open_state_store", "state"),
                         ("open_index", "index")):  # fmt: skip
        original = getattr(rt, opener)

        def counted(*args: Any, _original: Any = original, _kind: str = kind, **kw: Any) -> Any:
            inner = _original(*args, **kw)
            if hasattr(inner, "scrubbable"):  # ARCHIVER_STATE=postgres: count each side too
                inner.primary = _Counted(inner.primary, "state_pg", counts)
                inner.scrubbable = _Counted(inner.scrubbable, "state_default", counts)
            return _Counted(inner, _kind, counts)

        setattr(rt, opener, counted)
    uvicorn.run("archiver.api.app:create_app", factory=True, host="127.0.0.1", port=port,
                loop="uvloop", http="httptools", log_level="warning", access_log=False)  # fmt: skip


# -- payloads ---------------------------------------------------------------------------

BUSINESS = "15550783881"


def text_deliveries(tag: str, phase: str, count: int, contacts: int) -> list[bytes]:
    """One text message per delivery; the body names the run tag and the message number."""
    template = json.loads((SHARED / "fixtures" / "whatsapp" / "messages_text.json").read_text())
    out = []
    for i in range(count):
        value = template["entry"][0]["changes"][0]["value"]
        wa_id = f"1650{i % contacts:07d}"
        value["contacts"][0]["wa_id"] = wa_id
        message = value["messages"][0]
        message["from"] = wa_id
        message["id"] = f"wamid.P{tag}{phase}{i:08d}"
        message["text"]["body"] = f"probe {tag} {phase}{i} does it come in another color"
        out.append(json.dumps(template).encode())
    return out


def history_deliveries(tag: str, phase: str, messages: int, per_delivery: int,
                       contacts: int) -> tuple[list[bytes], list[int]]:  # fmt: skip
    """Meta's ``history`` webhook (Coexistence onboarding sync): each delivery one chunk
    with threads of 10 messages, alternating business and contact. Returns the bodies and,
    for each message number, the delivery that carries it."""
    template = json.loads((SHARED / "fixtures" / "whatsapp" / "history.json").read_text())
    bodies: list[bytes] = []
    carrier: list[int] = []
    n = 0
    chunks = (messages + per_delivery - 1) // per_delivery
    for chunk in range(chunks):
        threads: dict[str, list[dict[str, Any]]] = {}
        for _ in range(min(per_delivery, messages - n)):
            wa_id = f"1651{(n // 10) % contacts:07d}"
            threads.setdefault(wa_id, []).append({
                "from": BUSINESS if n % 2 else wa_id,
                "id": f"wamid.H{tag}{phase}{n:08d}",
                "timestamp": str(1739230955 + n),
                "type": "text",
                "text": {"body": f"history {tag} {phase}{n} thanks for your order"},
                "history_context": {"status": "READ"},
            })  # fmt: skip
            carrier.append(chunk)
            n += 1
        value = template["entry"][0]["changes"][0]["value"]
        value["history"] = [{
            "metadata": {"phase": 0, "chunk_order": chunk + 1,
                         "progress": min(100, (chunk + 1) * 100 // chunks)},
            "threads": [{"id": k, "messages": v} for k, v in threads.items()],
        }]  # fmt: skip
        bodies.append(json.dumps(template).encode())
    return bodies, carrier


# -- CPU per process ----------------------------------------------------------------------


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _cpu_seconds(pid: int, children: dict[int, list[int]] | None) -> float:
    """User + system CPU of ``pid``; with ``children``, also of its live descendants
    (PostgreSQL's backends) and of the children it waited for (cutime, cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime stime [cutime cstime]
        total += sum(int(x) for x in fields[11 : 15 if children is not None else 13]) / tick
        todo += (children or {}).get(current, [])
    return total


class CpuMeter:
    """CPU seconds of each process of the run: the archiver, MinIO, Elasticsearch,
    PostgreSQL and this bench (the load, the visibility poll and the ceiling's client).
    On a shared 2-core machine the processes get what the others leave them; CPU per
    record is what the work costs, whatever the load (the target's ratio at equal CPU)."""

    def __init__(self, server_pid: int) -> None:
        self.pids = {"archiver": server_pid, "bench": os.getpid()}
        services = Path(os.environ.get("ARCHIVER_SERVICES_DIR", REPO / ".services"))
        for name, folder in (("minio", "minio"), ("elasticsearch", "es"), ("postgres", "pg")):
            with contextlib.suppress(OSError, ValueError):
                self.pids[name] = int((services / folder / "pid").read_text().split()[0])
        missing = {"minio", "elasticsearch", "postgres"} - set(self.pids)
        if missing:  # not started by scripts/services: their CPU is not in the figures
            print(f"cpu: no pid file for {', '.join(sorted(missing))}", file=sys.stderr)

    def read(self) -> dict[str, float]:
        children = _proc_children()
        # The bench alone: the archiver it started is its child and counted on its own.
        return {name: _cpu_seconds(pid, None if name == "bench" else children)
                for name, pid in self.pids.items()}  # fmt: skip

    @staticmethod
    def per_unit(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float]:
        """CPU milliseconds per unit (record or PUT) of each process that used any."""
        out = {k: round(1000 * (after[k] - before[k]) / max(1, units), 2)
               for k in after if k in before and after[k] > before[k]}  # fmt: skip
        out["total_but_bench"] = round(sum(v for k, v in out.items() if k != "bench"), 2)
        return out


# -- visibility in the index ------------------------------------------------------------


class Visibility:
    """Polls Elasticsearch for the run's messages of one phase: the first time each
    message number is seen. Sorted by ``leaf_index`` from a little before the highest leaf
    seen (the follower indexes in log order; the overlap covers a bulk split in two).

    Only documents not seen yet are fetched (the overlap's seen leaves are excluded by a
    ``terms`` filter): fetching the whole overlap's ``_source`` ten times a second cost
    Elasticsearch about 0.18 cores on its own, taken from the pipeline being measured."""

    OVERLAP = 2000

    def __init__(self, es: Any, alias: str, tag: str, phase: str, poll: float) -> None:
        self.es, self.alias, self.tag, self.phase, self.poll = es, alias, tag, phase, poll
        self.seen: dict[int, float] = {}
        self._pattern = re.compile(rf"\b{re.escape(phase)}(\d+)\b")
        self._stop = threading.Event()
        self._high = 0
        self._leaves: set[int] = set()  # leaves of the documents already seen
        self.errors = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:  # the index is created by the first batch: not there yet
                self.errors += 1
            self._stop.wait(self.poll)

    def _poll_once(self) -> None:
        after: list[Any] | None = None
        low = max(0, self._high - self.OVERLAP)
        known = sorted(leaf for leaf in self._leaves if leaf >= low)
        while True:
            body: dict[str, Any] = {
                "query": {"bool": {"filter": [
                    {"term": {"text": self.tag}},
                    {"range": {"leaf_index": {"gte": low}}},
                ], "must_not": [{"terms": {"leaf_index": known}}]}},
                "sort": [{"leaf_index": "asc"}, {"id": "asc"}],
                "_source": ["text", "leaf_index"], "size": 5000,
            }  # fmt: skip
            if after is not None:
                body["search_after"] = after
            hits = self.es.search(index=self.alias, body=body)["hits"]["hits"]
            now = time.time()
            for hit in hits:
                match = self._pattern.search(str(hit["_source"].get("text", "")))
                if match:
                    self.seen.setdefault(int(match.group(1)), now)
                leaf = hit["_source"].get("leaf_index")
                if isinstance(leaf, int):
                    self._high = max(self._high, leaf)
                    self._leaves.add(leaf)
            if len(hits) < 5000:
                return
            after = hits[-1]["sort"]

    def wait_all(self, count: int, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if len(self.seen) >= count:
                return True
            time.sleep(0.05)
        return len(self.seen) >= count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# -- load -------------------------------------------------------------------------------


def closed_loop(port: int, payloads: list[bytes], connections: int) -> tuple[list[float], dict]:
    """Send each payload once over ``connections`` keep-alive connections; the wall-clock
    time each 200 arrived (index by payload) and the status counts."""
    requests = signed_requests(payloads)
    acked = [0.0] * len(requests)
    statuses: dict[int, int] = {}
    cursor = [0]

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while cursor[0] < len(requests):
                i = cursor[0]
                cursor[0] += 1
                status = await _exchange(reader, writer, requests[i])
                acked[i] = time.time()
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(connection() for _ in range(connections)))

    asyncio.run(run())
    return acked, statuses


def open_loop(port: int, payloads: list[bytes], rate: float, connections: int
              ) -> tuple[list[float], dict, float]:  # fmt: skip
    """Delivery i due at ``start + i / rate`` whatever the answers do; ack times, statuses
    and the worst lateness of a send against its schedule (the client's own delay)."""
    requests = signed_requests(payloads)
    acked = [0.0] * len(requests)
    statuses: dict[int, int] = {}
    late = [0.0]

    async def run() -> None:
        due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

        async def connection() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                while True:
                    i, t_due = await due.get()
                    if i < 0:
                        return
                    late[0] = max(late[0], time.perf_counter() - t_due)
                    status = await _exchange(reader, writer, requests[i])
                    acked[i] = time.time()
                    statuses[status] = statuses.get(status, 0) + 1
            finally:
                writer.close()

        workers = [asyncio.create_task(connection()) for _ in range(connections)]
        start = time.perf_counter()
        sent = 0
        while sent < len(requests):
            now = time.perf_counter()
            while sent < len(requests) and start + sent / rate <= now:
                due.put_nowait((sent, start + sent / rate))
                sent += 1
            await asyncio.sleep(0.002)
        for _ in workers:
            due.put_nowait((-1, 0.0))
        await asyncio.gather(*workers)

    asyncio.run(run())
    return acked, statuses, late[0]


# -- one run ----------------------------------------------------------------------------


def read_counts(path: Path) -> Counter[str]:
    for _ in range(20):
        try:
            return Counter(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.05)
    return Counter()


_STAGE = re.compile(
    r'^archiver_pipeline_stage_seconds_(sum|count)\{stage="([a-z_]+)"\} (\S+)$', re.M
)


def read_stages(port: int) -> dict[str, list[float]]:
    """Stage -> [seconds, count] from the app's /metrics (empty before the stage metrics
    existed: the BEFORE figures come from the code without them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, list[float]] = {}
    for kind, name, value in _STAGE.findall(text):
        out.setdefault(name, [0.0, 0.0])[0 if kind == "sum" else 1] = float(value)
    return out


def stage_delta(before: dict[str, list[float]], after: dict[str, list[float]]) -> dict[str, Any]:
    """Per stage: total seconds (summed over concurrent workers), times run, mean ms."""
    out: dict[str, Any] = {}
    for name, (seconds, count) in after.items():
        s0, c0 = before.get(name, [0.0, 0.0])
        if count - c0 > 0:
            out[name] = {
                "seconds": round(seconds - s0, 2),
                "runs": int(count - c0),
                "mean_ms": round(1000 * (seconds - s0) / (count - c0), 1),
            }
    return out


def per_record(before: Counter[str], after: Counter[str], records: int) -> dict[str, float]:
    """Calls per record of each ``kind.method`` (and the busiest key prefixes)."""
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
    plain = {k: v / records for k, v in delta.items() if "[" not in k}
    prefixed = sorted(
        ((v, k) for k, v in delta.items() if "[" in k and not k.startswith("indexer:")),
        reverse=True,
    )[:12]
    indexer = sorted((v, k) for k, v in delta.items() if "[" in k and k.startswith("indexer:"))
    return {
        "state_total": sum(v for k, v in plain.items() if k.startswith("state.")),
        "object_total": sum(v for k, v in plain.items() if k.startswith("object.")),
        # --state postgres: the state round trips that went to Postgres / stayed on S3.
        "state_pg_total": sum(v for k, v in plain.items() if k.startswith("state_pg.")),
        "state_default_total": sum(
            v for k, v in plain.items() if k.startswith("state_default.")
        ),
        "indexer:state_total": sum(v for k, v in plain.items() if k.startswith("indexer:state.")),
        "indexer:object_total": sum(v for k, v in plain.items() if k.startswith("indexer:object.")),
        **dict(sorted(plain.items())),
        **{k: v / records for v, k in prefixed},
        **{k: v / records for v, k in reversed(indexer)},
    }


def phase_figures(name: str, first_send: float, acked: list[float], carrier: list[int] | None,
                  vis: Visibility, count: int, statuses: dict,
                  rt: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Figures of one phase; ``carrier`` maps message -> delivery when they differ."""
    ack_of = [acked[carrier[i]] if carrier else acked[i] for i in range(count)]
    seen = vis.seen
    lags = [seen[i] - ack_of[i] for i in range(count) if i in seen]
    last_visible = max(seen.values()) if seen else float("nan")
    return {
        "phase": name,
        "messages": count,
        "searchable": len(seen),
        "capture_per_s": len(acked) / max(1e-9, max(acked) - first_send),
        "capture_s": max(acked) - first_send,
        "searchable_after_s": last_visible - first_send,
        "e2e_records_per_s": len(seen) / max(1e-9, last_visible - first_send),
        "lag_p50_s": statistics.median(lags) if lags else float("nan"),
        "lag_p99_s": pct(lags, 99) if lags else float("nan"),
        "lag_max_s": max(lags) if lags else float("nan"),
        "statuses": {str(k): v for k, v in statuses.items()},
        "round_trips_per_record": rt,
    }


def profile_top(raw: Path, limit: int = 30) -> list[tuple[int, int, int, str]]:
    """Inclusive samples per frame of our code (``archiver``/``search``) and of the store
    clients, from py-spy's raw collapsed stacks (all threads, ``--idle``):
    (all, waiting on a socket, running, frame). A sample whose innermost frame waits for
    work (a lock, a queue, a sleep, a select) is left out: idle threads are not cost."""
    samples: Counter[str] = Counter()
    on_socket: Counter[str] = Counter()
    total = [0, 0, 0]
    waiting = re.compile(
        r"^(\w+\.)?(wait|_wait_for_tstate_lock|get|select|poll|acquire|"
        r"sleep|_worker|accept|join|control|run_forever|_run_once) "
    )
    socket_read = re.compile(r"^(\w+\.)?(readinto|recv_into|recv|read|sendall|send|connect) "
                             r"\((socket|ssl)\.py\)")  # fmt: skip
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        if not frames or waiting.match(frames[-1]):
            continue
        count = int(n)
        io = bool(socket_read.match(frames[-1]))
        total[0] += count
        total[1 if io else 2] += count
        for frame in set(frames):
            if any(part in frame for part in ("archiver/", "search/", "minio/", "elastic")):
                samples[frame] += count
                if io:
                    on_socket[frame] += count
    return [
        (total[0], total[1], total[2], "TOTAL non-idle samples (all threads)"),
        *((n, on_socket[f], n - on_socket[f], f) for f, n in samples.most_common(limit)),
    ]


def _pg_schema_dsn(unique: str) -> str:
    """A fresh schema on the test PostgreSQL (``ARCHIVER_TEST_PG_DSN``) for one run."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    base = os.environ["ARCHIVER_TEST_PG_DSN"]
    schema = f"bench_{unique}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return make_conninfo(base, options=f"-c search_path={schema}")


def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    from elasticsearch import Elasticsearch

    unique = uuid.uuid4().hex[:10]
    tag = f"r{unique[:6]}"
    extra: dict[str, str] = {}
    if args.state == "postgres":
        extra = {"ARCHIVER_STATE": "postgres", "ARCHIVER_STATE_DSN": _pg_schema_dsn(unique)}
    env = archive_env(unique, inline_workers=True, extra=extra)
    env["ARCHIVER_PROCESSING_WORKERS"] = str(args.processing_workers)
    env["PYTHONPATH"] = str(REPO)  # this tree's code, whatever the venv's install points at
    port = free_port()
    counts_path = Path(env["ARCHIVER_DATA_DIR"]) / "bench-counts.json"
    server = start_server(
        env,
        port,
        command=[
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve",
            str(port),
            str(counts_path),
        ],
    )
    es = Elasticsearch(os.environ["ARCHIVER_TEST_ES_URL"], request_timeout=60)
    meter = CpuMeter(server.pid)
    alias = f"bench-{unique}"
    out: dict[str, Any] = {"run": run, "alias": alias}
    try:
        if not wait_for_port(port, server):
            raise RuntimeError("server did not start")
        time.sleep(1.0)

        def measured(
            name: str, payloads: list[bytes], count: int, carrier: list[int] | None,
            load: Any, timeout: float, profile: bool = False,
        ) -> dict[str, Any]:  # fmt: skip
            vis = Visibility(es, alias, tag, name, args.poll)
            cpu_before = meter.read()
            before = read_counts(counts_path)
            stages_before = read_stages(port)
            spy = None
            if profile and args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(server.pid), "--duration",
                     str(int(args.profile_seconds)), "--rate", "50", "--idle", "--format", "raw",
                     "--nolineno", "--nonblocking", "-o", str(Path(args.profile) / f"{name}.raw")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            first_send = time.time()
            acked, statuses = load(payloads)
            done = vis.wait_all(count, timeout)
            time.sleep(1.0)  # the batch's "done" write lands after its leaves are indexed
            after = read_counts(counts_path)
            stages = stage_delta(stages_before, read_stages(port))
            vis.stop()
            records = max(1, len(vis.seen))
            figures = phase_figures(
                name,
                first_send,
                acked,
                carrier,
                vis,
                count,
                statuses,
                per_record(before, after, records),
            )
            figures["complete"] = done
            figures["stages"] = stages
            figures["cpu_ms_per_record"] = CpuMeter.per_unit(cpu_before, meter.read(), records)
            if spy is not None:
                spy.wait()
            print(f"  run {run} {name}: {fmt(figures)}", flush=True)
            print("    cpu ms per record: " + ", ".join(
                f"{k} {v}" for k, v in figures["cpu_ms_per_record"].items()))  # fmt: skip
            if stages:
                print(
                    "    stages (seconds summed over workers / runs / mean ms): "
                    + "; ".join(
                        f"{k} {v['seconds']} s/{v['runs']}/{v['mean_ms']}"
                        for k, v in stages.items()
                    )
                )
            return figures

        conns = args.concurrency
        out["closed"] = measured(
            "c",
            text_deliveries(tag, "c", args.deliveries, args.contacts),
            args.deliveries,
            None,
            lambda p: closed_loop(port, p, conns),
            args.timeout,
            profile=run == 1,
        )
        if args.rate > 0:
            n = int(args.rate * args.seconds)
            out["open"] = measured(
                "o",
                text_deliveries(tag, "o", n, args.contacts),
                n,
                None,
                lambda p: open_loop(port, p, args.rate, args.rate_connections)[:2],
                args.timeout,
            )
        if args.history > 0:
            bodies, carrier = history_deliveries(
                tag, "h", args.history, args.history_per_delivery, args.contacts
            )
            out["history"] = measured(
                "h",
                bodies,
                args.history,
                carrier,
                lambda p: closed_loop(port, p, conns),
                max(args.timeout, 900),
            )
        ceiling_payloads = text_deliveries(tag, "x", 2000, args.contacts)
        cpu_before = meter.read()
        out["ceiling"] = ceiling_phase(ceiling_payloads, conns, args.ceiling_seconds)
        # The ceiling's client is this process (minio-py threads): count it, unlike the
        # pipeline's, whose client side is the archiver.
        ceiling_cpu = CpuMeter.per_unit(cpu_before, meter.read(), out["ceiling"]["puts"])
        ceiling_cpu["total"] = round(ceiling_cpu.get("minio", 0) + ceiling_cpu.get("bench", 0), 2)
        out["ceiling"]["cpu_ms_per_put"] = ceiling_cpu
        print(f"  run {run} ceiling: {out['ceiling']['per_second']:.0f} PUT/s; cpu ms per PUT: "
              + ", ".join(f"{k} {v}" for k, v in ceiling_cpu.items()), flush=True)  # fmt: skip
        return out
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def fmt(f: dict[str, Any]) -> str:
    rt = f["round_trips_per_record"]
    return (f"{f['searchable']}/{f['messages']} searchable after {f['searchable_after_s']:.1f} s; "
            f"capture {f['capture_per_s']:.0f}/s; e2e {f['e2e_records_per_s']:.0f} records/s; "
            f"lag p50 {f['lag_p50_s']:.2f} p99 {f['lag_p99_s']:.2f} max {f['lag_max_s']:.2f} s; "
            f"round trips/record state {rt['state_total']:.2f} "
            f"(postgres {rt.get('state_pg_total', 0):.2f}) "
            f"object {rt['object_total']:.2f}")  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> None:
    def med(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in runs if phase in r)

    print(f"\n=== medians of {len(runs)} run(s) ===")
    ratios = [r["closed"]["e2e_records_per_s"] / r["ceiling"]["per_second"] for r in runs]
    print(f"ceiling (one minio-py PUT per record)   {med('ceiling', 'per_second'):8.0f} PUT/s")
    for phase, label in (("closed", "closed loop"), ("open", "open loop"),
                         ("history", "history burst")):  # fmt: skip
        if phase not in runs[0]:
            continue
        print(f"{label:14s} capture {med(phase, 'capture_per_s'):6.0f}/s  "
              f"e2e {med(phase, 'e2e_records_per_s'):6.0f} records/s  "
              f"searchable after {med(phase, 'searchable_after_s'):6.1f} s  "
              f"lag p50 {med(phase, 'lag_p50_s'):6.2f} p99 {med(phase, 'lag_p99_s'):6.2f} "
              f"max {med(phase, 'lag_max_s'):6.2f} s  "
              f"complete {sum(r[phase]['complete'] for r in runs)}/{len(runs)}")  # fmt: skip
    print(
        f"e2e (closed) / ceiling, per run: {', '.join(f'{x:.2f}x' for x in ratios)}; "
        f"median {statistics.median(ratios):.2f}x (target >= 0.5)"
    )
    # The same ratio at equal CPU: what a record costs all our processes against what a
    # ceiling PUT costs MinIO and its client (noise-free where the rates are not).
    for phase in ("closed", "open", "history"):
        if phase not in runs[0]:
            continue
        costs = [r[phase]["cpu_ms_per_record"]["total_but_bench"] for r in runs]
        puts = [r["ceiling"]["cpu_ms_per_put"]["total"] for r in runs]
        at_equal = [p / c for p, c in zip(puts, costs, strict=True) if c > 0]
        print(f"cpu per record ({phase}): {statistics.median(costs):.2f} ms against "
              f"{statistics.median(puts):.2f} ms per ceiling PUT -> at equal CPU "
              f"{statistics.median(at_equal):.2f}x the ceiling")  # fmt: skip
    for phase in ("closed", "history"):
        if phase not in runs[0]:
            continue
        keys = runs[0][phase]["round_trips_per_record"].keys()
        rts = {k: statistics.median(r[phase]["round_trips_per_record"].get(k, 0) for r in runs)
               for k in keys}  # fmt: skip
        print(
            f"round trips per record ({phase}, medians): "
            + ", ".join(f"{k} {v:.2f}" for k, v in rts.items() if v >= 0.01)
        )


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve_counted(int(sys.argv[2]), Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0, help="open loop: deliveries/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="open loop: duration")
    parser.add_argument("--rate-connections", type=int, default=16)
    parser.add_argument("--history", type=int, default=20000, help="history burst: messages")
    parser.add_argument("--history-per-delivery", type=int, default=100)
    parser.add_argument("--ceiling-seconds", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase, to searchable")
    parser.add_argument("--poll", type=float, default=0.1, help="index poll interval (s)")
    parser.add_argument("--processing-workers", type=int, default=4)
    parser.add_argument("--profile", help="directory for py-spy's raw stacks (first run)")
    parser.add_argument("--profile-seconds", type=float, default=30.0)
    parser.add_argument("--json", help="write every run's figures here")
    parser.add_argument("--state", choices=("default", "postgres"), default="default",
                        help="working state: the state bucket, or PostgreSQL "
                        "(ARCHIVER_TEST_PG_DSN; keys stay on the bucket)")  # fmt: skip
    args = parser.parse_args()
    needed = ["ARCHIVER_TEST_S3_ENDPOINT", "ARCHIVER_TEST_ES_URL"]
    if args.state == "postgres":
        needed.append("ARCHIVER_TEST_PG_DSN")
    for var in needed:
        if var not in os.environ:
            print(f'{var} is not set: eval "$(scripts/services env)" first', file=sys.stderr)
            return 2
    os.chdir(REPO)
    runs = [one_run(args, k + 1) for k in range(args.repeats)]
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    summary(runs)
    if args.profile:
        raw = Path(args.profile) / "c.raw"
        if raw.exists():
            print(
                f"\n=== py-spy, first closed loop ({raw}): inclusive samples of our "
                "frames [all, on a socket, running] ==="
            )
            for n, io, cpu, frame in profile_top(raw):
                print(f"{n:7d} {io:7d} {cpu:7d}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
