"""Export benchmark (issue 11): a case of N messages on real MinIO + Elasticsearch.

    eval "$(scripts/services env)"; .venv/bin/python bench/export.py [--n 100000] [--small 10000]
        [--reuse DIR] [--runs 3]

``--reuse DIR`` (a folder outside git, e.g. ``/tmp/wa-bench-export``) keeps the seeded
archive's names and data folder in ``DIR/seed.json``: a later run with the same ``--n``
against the same services skips seeding. ``--runs`` repeats the measured phases (new
cases each time, so every export allocates its Bates numbers afresh) and prints medians.

Seed: N text messages (one business number, 100 messages per contact) written the way the
processor writes them (``Record.build`` under each subject's data key, PUT under
retention, ``record`` leaves appended in blocks, index documents from
``message_document``), in parallel: the capture pipeline would take hours for 100,000.

Then, each in a fresh child process (so peak RSS is the phase's own):

* ``export``: the ``export`` job without transcripts over a case whose scope is every
  message (and over one covering the first ``--small``): messages/s and peak RSS;
* ``ceiling``: the same records listed the same way, each read and decrypted, its stored
  bytes and text written into a plain zip: what a naive exporter costs at least; once in
  one thread (the issue's ceiling) and once with the reads in as many threads as the
  export's gatherer uses (a stronger ceiling, printed beside it);
* ``transcript``: rendering one conversation's PDF transcript (count pages + render),
  messages/s, reported on its own.

Targets: export >= 0.5x the ceiling's messages/s; peak RSS at N <= 1.2x at ``--small``.
Buckets and index are left for inspection (and for ``--reuse``).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file, bench/ would shadow the ``search`` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PNID, DISPLAY = "100200300400", "15550100200"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PER_CONTACT = 100


def settings_env(unique: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ARCHIVER_") or k.startswith("ARCHIVER_TEST")}  # fmt: skip
    env.update({
        "ARCHIVER_DATA_DIR": str(data_dir), "ARCHIVER_STORE": "s3",
        "ARCHIVER_S3_ENDPOINT": os.environ["ARCHIVER_TEST_S3_ENDPOINT"],
        "ARCHIVER_S3_ACCESS_KEY": os.environ["ARCHIVER_TEST_S3_ACCESS_KEY"],
        "ARCHIVER_S3_SECRET_KEY": os.environ["ARCHIVER_TEST_S3_SECRET_KEY"],
        "ARCHIVER_EVIDENCE_BUCKET": f"bench-ev-{unique}",
        "ARCHIVER_STATE_BUCKET": f"bench-st-{unique}",
        "ARCHIVER_WORKAREA_BUCKET": f"bench-wk-{unique}",
        "ARCHIVER_INDEX": "elasticsearch", "ARCHIVER_ES_URL": os.environ["ARCHIVER_TEST_ES_URL"],
        "ARCHIVER_ES_ALIAS": f"bench-{unique}", "ARCHIVER_APP_SECRETS": "bench-secret",
        "ARCHIVER_LOCK_MODE": "GOVERNANCE", "ARCHIVER_INLINE_WORKERS": "false",
        "ARCHIVER_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    return env


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM of its address space since exec). Not
    ``ru_maxrss``: Linux keeps that across execve, and a child started by vfork (as
    subprocess does) inherits the parent's peak through it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


# -- seeding (in the parent) ---------------------------------------------------------------


def seed(n: int, first: int = 0, done_upto: Any = None) -> None:
    """Messages ``[first, n)``; ``done_upto(k)`` after each block (``--reuse`` resumes)."""
    from archiver.indexing.documents import message_document
    from archiver.ledger.entry import EntryKind, make_entry
    from archiver.records.model import Record, iso
    from archiver.runtime import Runtime
    from archiver.settings import load_settings
    from archiver.store.port import LockMode, Retention

    rt = Runtime.open(load_settings(), create=True)
    rt.index.ensure_index()
    retain = T0 + timedelta(days=3650)
    retention = Retention(LockMode.GOVERNANCE, retain)
    started = time.perf_counter()
    data_keys: dict[str, Any] = {}  # one key per subject: its state GET once, not per message

    def one(i: int) -> tuple[Record, str, dict[str, Any], dict[str, Any]]:
        contact = f"1650{i // PER_CONTACT:07d}"
        subject = rt.pseudo.subject(PNID, "wa:" + contact)
        dk = data_keys.get(subject)
        if dk is None:
            dk = data_keys[subject] = rt.keys.get_or_create(subject,
                                                            creator=f"bench-{subject}")[0]
        when = T0 + timedelta(seconds=30 * i)
        wamid = f"wamid.bench{i:09d}"
        header = {
            "v": 1, "record_id": rt.pseudo.record_id(PNID, "msg:" + wamid), "kind": "message",
            "origin": "customer", "direction": "inbound", "message_type": "text",
            "business": {"phone_number_id": PNID, "display_phone_number": DISPLAY},
            "subject": subject, "conversation": rt.pseudo.conversation(PNID, contact),
            "message_ref": rt.pseudo.message_ref(PNID, wamid), "refs": {},
            "occurred_at": iso(when), "captured_at": iso(when),
            "policy": {"id": "default", "retain_until": iso(retain), "lock_mode": "GOVERNANCE"},
            "flags": [],
        }  # fmt: skip
        event = {"texts": [f"message {i} about the quarterly numbers and the contract"],
                 "contact": {"wa_id": contact, "name": f"Customer {i // PER_CONTACT}"},
                 "message_id": wamid}  # fmt: skip
        record = Record.build(header, {"event": event}, data_key=dk.secret, key_id=dk.key_id)
        put = rt.objects.put(record.key, record.body, retention=retention,
                             content_type="application/json")  # fmt: skip
        return record, put.version_id, header, event

    block = 2000
    with ThreadPoolExecutor(16) as pool:
        for start in range(first, n, block):
            done = list(pool.map(one, range(start, min(n, start + block))))
            entries = [make_entry(EntryKind.RECORD, time=T0, key=r.key, version_id=v,
                                  sha256=r.sha256, size=len(r.body), retain_until=retain,
                                  record_id=r.record_id, event="message",
                                  policy="default").data for r, v, _, _ in done]  # fmt: skip
            leaves = rt.log.append(entries)
            rt.index.upsert(message_document(h, e, leaf)
                            for (_, _, h, e), leaf in zip(done, leaves, strict=True))
            print(f"  seeded {start + len(done):,}/{n:,}", file=sys.stderr, flush=True)
            if done_upto is not None:
                done_upto(start + len(done))
    refresh = getattr(rt.index, "refresh", None)
    if callable(refresh):
        refresh()
    rt.checkpoints.sign_if_grown()
    print(f"seed: {n:,} messages in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rt.close()


def make_case(last: int) -> str:
    """A case over the first ``last`` messages (by date)."""
    from archiver.audit import Actor
    from archiver.cases.model import Scope
    from archiver.cases.service import CaseInput
    from archiver.runtime import Runtime
    from archiver.settings import load_settings

    rt = Runtime.open(load_settings(), create=False)
    actor = Actor(token_id=None, name="bench", role="admin")
    scope = Scope("", T0, T0 + timedelta(seconds=30 * last), (PNID,))
    doc = rt.cases.create(CaseInput(name=f"bench {last}", matter_number="B-1",
                                            scope=scope), actor)  # fmt: skip
    rt.close()
    return str(doc["id"])


# -- phases (each in a child process) ------------------------------------------------------


class MemProbe:
    """``--mem`` (env ``BENCH_MEM``: ``1`` RSS and malloc only, ``2`` with tracemalloc):
    samples VmRSS every 0.2 s and notes which step of the export held the peak, glibc's
    ``mallinfo2`` (bytes in use vs held free by malloc), ``smaps_rollup`` (anonymous vs
    file-backed) and, with tracemalloc, the Python heap's peak and its largest sites."""

    def __init__(self, level: int) -> None:
        import ctypes
        import threading

        self.level, self.stage, self.peak, self.peak_stage = level, "open", 0.0, ""
        self.stage_peaks: dict[str, float] = {}
        self.stage_tm: dict[str, float] = {}
        self._stop = threading.Event()
        self._libc = ctypes.CDLL("libc.so.6")

        class _MI2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]  # fmt: skip

        self._libc.mallinfo2.restype = _MI2
        if level >= 2:
            import tracemalloc

            tracemalloc.start(8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def rss() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def set(self, stage: str) -> None:
        if self.level >= 2:
            import tracemalloc

            self.stage_tm[self.stage] = max(self.stage_tm.get(self.stage, 0.0),
                                            tracemalloc.get_traced_memory()[1] / 2**20)
            tracemalloc.reset_peak()
        self.stage = stage

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            r = self.rss()
            self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0.0), r)
            if r > self.peak:
                self.peak, self.peak_stage = r, self.stage

    def malloc(self) -> dict[str, float]:
        mi = self._libc.mallinfo2()
        return {"arena_mb": mi.arena / 2**20, "mmap_mb": mi.hblkhd / 2**20,
                "in_use_mb": mi.uordblks / 2**20, "free_held_mb": mi.fordblks / 2**20}

    def report(self) -> dict[str, Any]:
        import threading

        self.set("end")
        self._stop.set()
        out: dict[str, Any] = {"peak_stage": self.peak_stage,
                               "stage_rss_peaks": {k: round(v, 1) for k, v in
                                                   self.stage_peaks.items()},
                               "malloc_end": {k: round(v, 1) for k, v in
                                              self.malloc().items()},
                               "threads_end": threading.active_count(),
                               "arena_max": os.environ.get("MALLOC_ARENA_MAX", "")}
        roll = Path("/proc/self/smaps_rollup")
        if roll.exists():
            for line in roll.read_text().splitlines()[1:]:
                k, v = line.split(":", 1)
                if k in ("Rss", "Anonymous", "Private_Clean", "Private_Dirty", "Shared_Clean"):
                    out[f"smaps_{k}_mb"] = round(int(v.split()[0]) / 1024, 1)
        if self.level >= 2:
            import tracemalloc

            out["tracemalloc_stage_peaks_mb"] = {k: round(v, 1)
                                                 for k, v in self.stage_tm.items()}
            snap = tracemalloc.take_snapshot()
            out["tracemalloc_end_top"] = [str(s) for s in snap.statistics("lineno")[:8]]
        return out


def _probe_stages(probe: MemProbe) -> None:
    """Name the export's steps for the probe (the bench's own instrumentation)."""
    from archiver.export import gather, job, writer

    def wrap(cls: Any, name: str, stage: str, gen: bool = False) -> None:
        orig = getattr(cls, name)
        if gen:
            def g(*a: Any, **k: Any) -> Any:
                probe.set(stage)
                yield from orig(*a, **k)
                probe.set(stage + "-done")
            setattr(cls, name, g)
        else:
            def f(*a: Any, **k: Any) -> Any:
                probe.set(stage)
                return orig(*a, **k)
            setattr(cls, name, f)

    wrap(gather.Gatherer, "plan", "plan")
    wrap(gather.Gatherer, "items", "items", gen=True)
    wrap(writer.PackageWriter, "records_list_digest", "close-records")
    wrap(writer.PackageWriter, "seal", "seal")
    wrap(writer.PackageWriter, "finish", "manifest")
    wrap(job.ExportRun, "_erased_meanwhile", "after-upload")
    from archiver.jobs import context

    wrap(context.JobContext, "write_artifact", "upload")


def phase_export(case_id: str) -> dict[str, Any]:
    level = int(os.environ.get("BENCH_MEM") or 0)
    probe = MemProbe(level) if level else None
    if probe is not None:
        _probe_stages(probe)
    from archiver.audit import Actor
    from archiver.export.job import KIND, ExportOptions, case_params
    from archiver.jobs.model import JobOwner, JobState
    from archiver.runtime import Runtime
    from archiver.settings import load_settings

    rt = Runtime.open(load_settings(), create=False)
    service = rt.export_jobs()
    actor = Actor(token_id=None, name="bench", role="admin")
    started = time.perf_counter()
    job = service.submit(KIND, case_params(case_id, actor, ExportOptions(transcripts=False)),
                         JobOwner("bench", "admin", None))  # fmt: skip
    service.run_until_idle(timeout=24 * 3600)
    seconds = time.perf_counter() - started
    job = service.get(KIND, job.id)
    assert job.state is JobState.SUCCEEDED, (job.state, job.errors)
    records = int(job.progress.counts["records"])
    size = int(job.result["artifacts"][0]["size"])
    out = {"records": records, "seconds": seconds, "per_s": records / seconds,
           "package_mb": size / 1e6, "peak_rss_mb": peak_rss_mb()}
    if probe is not None:
        out["mem"] = probe.report()
    return out


def phase_ceiling(case_id: str, readers: int = 1) -> dict[str, Any]:
    """The same records, listed the same way, read, decrypted, into a plain zip; with
    ``readers`` > 1 the reads run in that many threads (as the export's gatherer does)."""
    from archiver.audit import Actor
    from archiver.records.model import Record, record_key
    from archiver.retention.common import live_versions
    from archiver.runtime import Runtime
    from archiver.settings import load_settings

    rt = Runtime.open(load_settings(), create=False)
    actor = Actor(token_id=None, name="bench", role="admin")
    started = time.perf_counter()
    n = 0
    keys: dict[str, Any] = {}

    def read(rid: str) -> tuple[str, Record]:
        key = record_key(rid)
        return rid, Record.parse(rt.objects.get(key, live_versions(rt.objects, key)[0]))

    def pages() -> Any:
        ids = rt.cases.records_in_scope(case_id, actor)
        while page := [rid for _, rid in zip(range(256), ids, strict=False)]:
            yield page

    with tempfile.TemporaryFile() as sink, zipfile.ZipFile(sink, "w",
                                                           zipfile.ZIP_DEFLATED) as zf, \
            ThreadPoolExecutor(readers) as pool:  # fmt: skip
        for page in pages():
            for rid, record in (pool.map(read, page) if readers > 1 else map(read, page)):
                if record.key_id not in keys:
                    keys[record.key_id] = rt.keys.get(record.key_id)
                event = record.open(keys[record.key_id].secret)["event"]
                zf.writestr(f"natives/{rid}.json", record.body)
                zf.writestr(f"text/{rid}.txt", "\n".join(event.get("texts") or []))
                n += 1
    seconds = time.perf_counter() - started
    return {"records": n, "seconds": seconds, "per_s": n / seconds, "peak_rss_mb": peak_rss_mb()}


def phase_transcript(messages: int) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from archiver.export import transcript as tr

    lines = [tr.TranscriptMessage(f"r_{i}", T0 + timedelta(minutes=i), "Customer 1 (1650)",
                                  i % 3 == 0, tr.Origin.BUSINESS_APP if i % 3 == 0
                                  else tr.Origin.CONTACT,
                                  text=f"message {i} about the quarterly numbers")
             for i in range(messages)]  # fmt: skip
    heading = tr.TranscriptHeading("Transcript", "bench")
    sections = [tr.TranscriptSection("Customer 1 with Acme", lines)]
    started = time.perf_counter()
    pages = tr.count_pages(heading, sections, tz=ZoneInfo("Europe/Paris"))
    pdf = tr.render_transcript(heading, sections, tz=ZoneInfo("Europe/Paris"),
                               bates=tr.Bates("B", 1))  # fmt: skip
    seconds = time.perf_counter() - started
    return {"messages": messages, "pages": pages, "seconds": seconds,
            "per_s": messages / seconds, "pdf_mb": len(pdf.data) / 1e6,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def child(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--phase", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--transcript-messages", type=int, default=1000)
    parser.add_argument("--reuse", metavar="DIR", help="keep/reuse the seeded archive here")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--only", choices=["export"],
                        help="only the export phases: --small then --n, alternated, --runs "
                        "times each (each on new cases), with the load average")
    parser.add_argument("--mem", type=int, default=0, choices=[0, 1, 2],
                        help="memory probe in the export child: 1 RSS by step, malloc and "
                        "smaps; 2 also tracemalloc (slower)")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from archiver.export.gather import READERS  # the ceiling reads with as many threads

    if args.phase:
        name, *rest = args.phase
        out = {"export": lambda: phase_export(rest[0]),
               "ceiling": lambda: phase_ceiling(rest[0], int(rest[1]) if rest[1:] else 1),
               "transcript": lambda: phase_transcript(int(rest[0]))}[name]()
        print(json.dumps(out))
        return 0
    for var in ("ARCHIVER_TEST_S3_ENDPOINT", "ARCHIVER_TEST_ES_URL"):
        if var not in os.environ:
            print(f'{var} is not set: eval "$(scripts/services env)" first', file=sys.stderr)
            return 2
    env = seeded_env(args.n, args.reuse)
    if args.seed_only:
        return 0
    if args.mem:
        env["BENCH_MEM"] = str(args.mem)
    if args.only == "export":
        return only_export(env, args.n, args.small, args.runs)
    runs: list[dict[str, dict[str, Any]]] = []
    for run in range(args.runs):
        big, small = make_case(args.n), make_case(args.small)
        results = {
            f"export_{args.small}": child(env, "export", small),
            f"export_{args.n}": child(env, "export", big),
            f"ceiling_{args.n}": child(env, "ceiling", big),
            f"ceiling8_{args.n}": child(env, "ceiling", big, str(READERS)),
            "transcript": child(env, "transcript", str(args.transcript_messages)),
        }
        print(f"run {run + 1}/{args.runs}:")
        for name, r in results.items():
            print(f"{name:>18}: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float)
                                              else f"{k} {v:,}" for k, v in r.items()))
        e, c = results[f"export_{args.n}"], results[f"ceiling_{args.n}"]
        s = results[f"export_{args.small}"]
        c8 = results[f"ceiling8_{args.n}"]
        print(f"  export / {READERS}-thread ceiling: {e['per_s'] / c8['per_s']:.2f}x")
        print(f"  export / ceiling: {e['per_s'] / c['per_s']:.2f}x; peak RSS "
              f"{e['peak_rss_mb'] / s['peak_rss_mb']:.2f}x", flush=True)
        runs.append(results)

    def med(phase: str, key: str) -> float:
        return statistics.median(float(r[phase][key]) for r in runs)

    e_s, c_s = med(f"export_{args.n}", "per_s"), med(f"ceiling_{args.n}", "per_s")
    ratios = [r[f"export_{args.n}"]["per_s"] / r[f"ceiling_{args.n}"]["per_s"] for r in runs]
    rss_n, rss_small = med(f"export_{args.n}", "peak_rss_mb"), med(f"export_{args.small}",
                                                                    "peak_rss_mb")
    print(f"medians of {len(runs)}: export {e_s:,.1f} msg/s, ceiling {c_s:,.1f} msg/s, "
          f"export {args.small:,} {med(f'export_{args.small}', 'per_s'):,.1f} msg/s, "
          f"transcript {med('transcript', 'per_s'):,.1f} msg/s")
    print(f"export / ceiling: {statistics.median(ratios):.2f}x (target >= 0.5x)")
    ratios8 = [r[f"export_{args.n}"]["per_s"] / r[f"ceiling8_{args.n}"]["per_s"] for r in runs]
    print(f"export / {READERS}-thread ceiling ({med(f'ceiling8_{args.n}', 'per_s'):,.1f} "
          f"msg/s): {statistics.median(ratios8):.2f}x")
    print(f"peak RSS {args.n:,} / {args.small:,}: {rss_n:,.1f} / {rss_small:,.1f} MB = "
          f"{rss_n / rss_small:.2f}x (target <= 1.2x)")
    return 0


def only_export(env: dict[str, str], n: int, small: int, runs: int) -> int:
    """The export phases alone, small and large alternated (load drifts: alternating
    spreads it over both), each figure printed as it comes, then the medians."""
    peaks: dict[int, list[float]] = {small: [], n: []}
    for run in range(runs):
        for size in (small, n):
            load = os.getloadavg()
            r = child(env, "export", make_case(size))
            peaks[size].append(float(r["peak_rss_mb"]))
            mem = r.pop("mem", None)
            print(f"run {run + 1} export_{size}: " + ", ".join(
                f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items())
                + f", load before {load[0]:.1f}", flush=True)  # fmt: skip
            if mem is not None:
                print("  mem " + json.dumps(mem), flush=True)
    big, little = statistics.median(peaks[n]), statistics.median(peaks[small])
    ratios = [b / s for b, s in zip(peaks[n], peaks[small], strict=True)]
    print(f"peak RSS {n:,} / {small:,}: medians {big:,.1f} / {little:,.1f} MB = "
          f"{big / little:.2f}x; per run {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"(target <= 1.2x)")
    return 0


def seeded_env(n: int, reuse: str | None) -> dict[str, str]:
    """The settings of a seeded archive of ``n`` messages: seeded now, or the one
    ``--reuse DIR`` remembers (same services), grown to ``n`` if it holds fewer (the
    count is saved after each block, so an interrupted seed goes on where it stopped)."""
    state = Path(reuse) / "seed.json" if reuse else None
    saved: dict[str, Any] = {}
    if state is not None and state.exists():
        saved = json.loads(state.read_text())
        if saved.get("s3") != os.environ["ARCHIVER_TEST_S3_ENDPOINT"]:
            saved = {}
    if saved:
        unique, data_dir = saved["unique"], Path(saved["data_dir"])
    else:
        unique = uuid.uuid4().hex[:10]
        data_dir = (state.parent / f"data-{unique}" if state is not None
                    else Path(tempfile.mkdtemp(prefix="bench-export-")))  # fmt: skip
        data_dir.mkdir(parents=True, exist_ok=True)
    env = settings_env(unique, data_dir)
    os.environ.update(env)
    have = int(saved.get("n", 0))
    if have >= n:
        print(f"reusing the archive of {have:,} messages in {reuse}", file=sys.stderr)
        return env

    def done_upto(k: int) -> None:
        if state is not None:
            state.write_text(json.dumps({"n": k, "unique": unique, "data_dir": str(data_dir),
                                         "s3": os.environ["ARCHIVER_TEST_S3_ENDPOINT"]}))

    seed(n, have, done_upto)
    return env


if __name__ == "__main__":
    sys.exit(main())
