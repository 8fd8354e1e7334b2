"""Memory stays flat: records streamed through a generator into a non-seekable sink.

Each size runs in a fresh process (peak RSS is per process): 2,000 then 20,000 records
through the writer. The caller's side (the Merkle tree, Bates numbers) is kept small on
purpose: proofs come from a compact tree of the records' leaves, numbers from the id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import hashlib, resource, sys
from datetime import timedelta
from archiver.export.model import (
    ExportInfo, ExportItem, ExportLeaf, LeafProof, LogBundle, Participant)
from archiver.export.writer import PackageWriter
from archiver.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.merkle import MemoryTree, hash_leaf
from archiver.ledger.note import Signer
from archiver.records import canonical
from tests.unit.export.factory import BUSINESS, ORIGIN, T0, NullSink

n = int(sys.argv[1])
def rid(i): return f"r_{i:09d}x"
def record(i):
    data = canonical.dumps(
        {"v": 1, "record_id": rid(i), "kind": "message", "sealed": {"ct": "x" * 200}})
    e = make_entry(EntryKind.RECORD, time=T0, key=f"records/{rid(i)}", version_id="v1",
                   sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return data, e.data
# The same leaf for every record keeps the caller's side tiny; the writer does not care.
data, entry = record(0)
tree = MemoryTree([hash_leaf(entry)] * 64)
signer = Signer.generate(ORIGIN)
log = LogBundle.from_note(sign_checkpoint(Checkpoint(ORIGIN, 64, tree.root()), [signer]),
                          signer.verifier.key_text)
proof = tuple(tree.inclusion_proof(5, 64))
customer = Participant("s_customer", "Marie Dupont")
sha = hashlib.sha256(data).hexdigest()
class Numbers(dict):
    def __missing__(self, key): return int(key[2:11]) + 1
def items():
    for i in range(n):
        yield ExportItem(record_id=rid(i), kind="message", conversation_id=f"c_{i // 1000}",
            conversation_display="Marie", timestamp=T0 + timedelta(seconds=i),
            direction="inbound",
            origin="customer", sender=customer, recipients=(BUSINESS,), record_json=data,
            record_sha256=sha, object_key="records/x", version_id="v1",
            leaf=LeafProof(entry, 5, proof), custodian="Acme",
            text=f"message number {i} " + "lorem ipsum " * 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
info = ExportInfo("case-m", "m", "me", T0, {}, bates_prefix="M")
sink = NullSink()
with PackageWriter(sink, info, log, Numbers(), validate_rsmf=False) as w:
    for it in items():
        w.add(it)
    w.records_list_digest()
    w.seal([])
    w.finish(ExportLeaf(LeafProof(entry, 5, proof), log, ()))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, sink.n)
'''


def _run(n: int) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(n)], capture_output=True, text=True, timeout=280,
        cwd=Path(__file__).resolve().parents[3], check=True,
    ).stdout.split()
    before, after, written = (int(x) for x in out)
    assert written > n * 500  # the package really holds the records
    return before, after


def test_memory_stays_flat() -> None:
    b_small, small = _run(2_000)
    b_large, large = _run(20_000)
    growth_small, growth_large = small - b_small, large - b_large
    print(json.dumps({"rss_kb_2000": small, "rss_kb_20000": large,
                      "growth_kb_2000": growth_small, "growth_kb_20000": growth_large}))
    # Ten times the records may cost the central directory (≈ 2 files × 20,000 ×
    # a few hundred bytes) and nothing else.
    assert large < small * 1.25, (small, large)
    assert growth_large - growth_small < 25_000, (growth_small, growth_large)


def test_writer_keeps_no_python_object_per_record() -> None:
    """The writer's own bookkeeping (names written, conversations seen) lives on disk:
    the Python heap (tracemalloc, deterministic unlike RSS) does not grow between the
    500th and the 2,500th record. A set of name digests grew ~300 KB over that span."""
    import hashlib
    import tracemalloc
    from datetime import timedelta

    from archiver.export.model import ExportInfo, ExportItem, LeafProof, LogBundle
    from archiver.export.model import Participant as P
    from archiver.export.writer import PackageWriter
    from archiver.ledger.checkpoint_format import Checkpoint, sign_checkpoint
    from archiver.ledger.entry import EntryKind, make_entry
    from archiver.ledger.merkle import MemoryTree, hash_leaf
    from archiver.ledger.note import Signer
    from archiver.records import canonical
    from tests.unit.export.factory import BUSINESS, ORIGIN, T0, NullSink

    data = canonical.dumps({"v": 1, "record_id": "r_x", "kind": "message", "sealed": {}})
    entry = make_entry(EntryKind.RECORD, time=T0, key="records/r_x", version_id="v1",
                       sha256=hashlib.sha256(data).hexdigest(), size=len(data)).data
    tree = MemoryTree([hash_leaf(entry)] * 8)
    signer = Signer.generate(ORIGIN)
    log = LogBundle.from_note(sign_checkpoint(Checkpoint(ORIGIN, 8, tree.root()), [signer]),
                              signer.verifier.key_text)  # fmt: skip
    proof = LeafProof(entry, 5, tuple(tree.inclusion_proof(5, 8)))

    class Numbers(dict[str, int]):
        def __missing__(self, key: str) -> int:
            return int(key[2:11]) + 1

    sha = hashlib.sha256(data).hexdigest()
    info = ExportInfo("case-t", "t", "me", T0, {}, bates_prefix="T")
    heap: dict[int, int] = {}
    tracemalloc.start()
    try:
        with PackageWriter(NullSink(), info, log, Numbers(), validate_rsmf=False) as w:  # type: ignore[arg-type]
            for i in range(2_500):
                w.add(ExportItem(
                    record_id=f"r_{i:09d}x", kind="message", conversation_id=f"c_{i // 50:05d}",
                    conversation_display="Marie", timestamp=T0 + timedelta(seconds=i),
                    direction="inbound", origin="customer", sender=P("s_1", "Marie"),
                    recipients=(BUSINESS,), record_json=data, record_sha256=sha,
                    object_key="records/x", version_id="v1", leaf=proof, custodian="Acme",
                    text=f"message {i}"))  # fmt: skip
                if i + 1 in (500, 2_500):
                    heap[i + 1] = tracemalloc.get_traced_memory()[0]
            w.records_list_digest()
            assert w.counts["conversations"] == 50
    finally:
        tracemalloc.stop()
    assert heap[2_500] - heap[500] < 100_000, heap  # ~670 KB before
