"""Build real export packages from synthetic records: a real in-memory Merkle tree, real
log entries, real signed checkpoints, real raw batches (the capture code's own sealing)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.export.model import (
    Attachment,
    CustodyEvent,
    Edit,
    Erasure,
    ExportInfo,
    ExportItem,
    ExportLeaf,
    LeafProof,
    LogBundle,
    Participant,
    RawBatch,
    RawSlot,
    Reaction,
    Receipt,
    Transcript,
)
from archiver.export.writer import PackageSummary, PackageWriter
from archiver.ingest.rawbatch import Delivery, seal_batch
from archiver.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.merkle import MemoryTree
from archiver.ledger.note import Signer
from archiver.records import canonical

ORIGIN = "archive.example/log"
T0 = datetime(2026, 3, 1, 21, 30, tzinfo=UTC)  # 22:30 in Europe/Paris: days cut there
BUSINESS = Participant("b_business", "Acme Ltd")


def rid(i: int) -> str:
    return "r_" + base64.b32encode(hashlib.sha256(b"r%d" % i).digest()).decode().lower()[:20]


@dataclass
class Spec:
    """What one synthetic record looks like."""

    i: int
    conversation: str
    when: datetime
    text: str
    inbound: bool = True
    attachments: int = 0
    edited: bool = False
    revoked: bool = False
    reacted: bool = False
    erased: bool = False


@dataclass
class Built:
    path: Path
    signer: Signer
    summary: PackageSummary
    items: list[ExportItem] = field(default_factory=list)
    batches: list[RawBatch] = field(default_factory=list)
    bates: dict[str, int] = field(default_factory=dict)


def _record_bytes(spec: Spec, raw: dict[str, object]) -> bytes:
    return canonical.dumps({
        "v": 1, "record_id": rid(spec.i), "kind": "message", "conversation": spec.conversation,
        "raw": raw, "sealed": {"alg": "A256GCM", "ct": base64.b64encode(os.urandom(24)).decode()},
    })  # fmt: skip


def default_specs() -> list[Spec]:
    """Two conversations over two Paris days: text, media, edits, revokes, reactions, an
    erased subject, an outbound echo."""
    s = [
        Spec(0, "c_alpha", T0, "Hello, I'd like a quote"),
        Spec(1, "c_alpha", T0 + timedelta(minutes=5), "Sure, here it is", inbound=False,
             attachments=2),
        Spec(2, "c_alpha", T0 + timedelta(minutes=40), "Thanks!\nSee you tomorrow",
             edited=True, reacted=True),  # 23:10 Paris: same day
        Spec(3, "c_alpha", T0 + timedelta(hours=2), "oops", revoked=True),  # next Paris day
        Spec(4, "c_beta", T0 + timedelta(hours=1), "secret personal text", erased=True),
        Spec(5, "c_beta", T0 + timedelta(hours=3), "Invoice attached", inbound=False,
             attachments=1),
    ]  # fmt: skip
    return s


def build(
    tmp: Path,
    specs: list[Spec] | None = None,
    *,
    signer: Signer | None = None,
    later_signer: Signer | None = None,
    transcripts: bool = True,
    validate_rsmf: bool = True,
    unseekable: bool = False,
    bind_files: bool = True,
) -> Built:
    specs = default_specs() if specs is None else specs
    signer = signer or Signer.generate(ORIGIN)
    tree = MemoryTree()
    for n in range(3):  # unrelated leaves before ours
        tree.append(make_entry(EntryKind.AUDIT, time=T0, key=f"audit/{n}", version_id="v",
                               sha256="0" * 64).leaf_hash)  # fmt: skip
    # One raw batch per record, two deliveries each: slot 1 is someone else's (stays sealed).
    batches: list[RawBatch] = []
    raws: list[dict[str, object]] = []
    for spec in specs:
        body = b'{"entry":[{"id":"%d","text":"%s"}]}' % (spec.i, spec.text.encode())
        other = b'{"entry":[{"id":"other","text":"not in scope"}]}'
        key = f"raw/2026/03/01/b{spec.i:06d}"
        data, _slots = seal_batch(
            f"b{spec.i:06d}",
            [Delivery(body, T0.isoformat(), "sha256=x", 0, "application/json"),
             Delivery(other, T0.isoformat(), "sha256=y", 0, "application/json")],
            [os.urandom(32), os.urandom(32)],
        )  # fmt: skip
        raws.append({"key": key, "version_id": f"rv{spec.i}",
                     "sha256": hashlib.sha256(data).hexdigest(), "slot": 0})  # fmt: skip
        if not spec.erased:
            batches.append(RawBatch(key, f"rv{spec.i}", data, (RawSlot(0, body),)))
    entries = []
    for spec, raw in zip(specs, raws, strict=True):
        data = _record_bytes(spec, raw)
        e = make_entry(EntryKind.RECORD, time=spec.when, key=f"records/{rid(spec.i)[2:4]}/"
                       f"{rid(spec.i)}", version_id=f"v{spec.i}",
                       sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                       record_id=rid(spec.i), event="message", policy="default")  # fmt: skip
        entries.append((data, e, tree.size))
        tree.append(e.leaf_hash)
    size1 = tree.size
    note1 = sign_checkpoint(Checkpoint(ORIGIN, size1, tree.root(size1)), [signer])
    log = LogBundle.from_note(note1, signer.verifier.key_text, ORIGIN)

    bates: dict[str, int] = {}
    nxt = 1
    items: list[ExportItem] = []
    for spec, (data, e, leaf_index) in zip(specs, entries, strict=True):
        customer = Participant(f"s_{spec.conversation}", "Marie Dupont")
        sender, to = (customer, BUSINESS) if spec.inbound else (BUSINESS, customer)
        atts = tuple(
            Attachment(f"{rid(spec.i)}-a{k}", f"photo {k}.jpg", "image/jpeg",
                       hashlib.sha256(b"JPEG%d-%d" % (spec.i, k)).hexdigest(),
                       b"JPEG%d-%d" % (spec.i, k), size=len(b"JPEG%d-%d" % (spec.i, k)))
            for k in range(spec.attachments)
        )  # fmt: skip
        bates[rid(spec.i)] = nxt
        for k, a in enumerate(atts, start=1):
            bates[a.id] = nxt + k
        nxt += 1 + len(atts)
        common = {
            "record_id": rid(spec.i), "kind": "message", "conversation_id": spec.conversation,
            "conversation_display": f"Marie Dupont ({spec.conversation})", "timestamp": spec.when,
            "direction": "inbound" if spec.inbound else "outbound",
            "origin": "customer" if spec.inbound else "business_app", "sender": sender,
            "recipients": (to,), "record_json": data, "record_sha256": e.fields["sha256"],
            "object_key": e.key, "version_id": e.version_id,
            "leaf": LeafProof(e.data, leaf_index, tuple(tree.inclusion_proof(leaf_index, size1))),
            "custodian": "Acme Ltd",
        }  # fmt: skip
        if spec.erased:
            items.append(ExportItem(**common, erasure=Erasure(T0 + timedelta(days=3), "er_42")))
            continue
        items.append(ExportItem(
            **common, text=spec.text, attachments=atts,
            edits=(Edit(sender.id, spec.when + timedelta(minutes=1), "Thanks", spec.text),)
            if spec.edited else (),
            reactions=(Reaction(BUSINESS.id, "👍"), Reaction(customer.id, "👍"))
            if spec.reacted else (),
            receipts=(Receipt(to.id, "delivered", spec.when + timedelta(seconds=2)),
                      Receipt(to.id, "read", spec.when + timedelta(seconds=9))),
            revoked=spec.revoked,
        ))  # fmt: skip

    info = ExportInfo(
        case_id="case-7", case_name="Dupont v. Acme", exported_by="legal@acme.example",
        exported_at=T0 + timedelta(days=10), query={"q": "quote", "numbers": ["1065"]},
        time_zone="Europe/Paris", bates_prefix="ACME", bates_digits=7, matter_number="M-1",
    )  # fmt: skip
    path = tmp / "export.zip"
    with path.open("wb") as fh, PackageWriter(
        Unseekable(fh) if unseekable else fh, info, log, bates,  # type: ignore[arg-type]
        validate_rsmf=validate_rsmf,
    ) as w:
        for it in items:
            w.add(it)
        for b in batches:
            w.add_raw_batch(b)
        if transcripts:
            convs = sorted({s.conversation for s in specs})
            for c in convs:
                w.add_transcript(Transcript(c, b"%PDF-1.7 fake " + c.encode(), 3, nxt, "Acme"))
                nxt += 3
        digest = w.records_list_digest()
        seal = w.seal(
            [CustodyEvent(T0, "legal@acme.example", "case:created", {"records": len(items)})]
        )
        export_entry = make_entry(
            EntryKind.EXPORT, time=info.exported_at, key="exports/case-7/e1.zip",
            version_id="ev1", sha256=digest, case="case-7", records=len(items),
            records_sha256=digest, query_sha256=hashlib.sha256(b"quote").hexdigest(),
            **(seal.entry_fields() if bind_files else {}),
        )  # fmt: skip
        tree.append(make_entry(EntryKind.AUDIT, time=T0, key="audit/x", version_id="v",
                               sha256="1" * 64).leaf_hash)  # fmt: skip
        export_index = tree.size
        tree.append(export_entry.leaf_hash)
        size2 = tree.size
        note2 = sign_checkpoint(Checkpoint(ORIGIN, size2, tree.root(size2)),
                                [later_signer or signer])  # fmt: skip
        later = LogBundle.from_note(note2, (later_signer or signer).verifier.key_text)
        summary = w.finish(
            ExportLeaf(
                LeafProof(export_entry.data, export_index,
                          tuple(tree.inclusion_proof(export_index, size2))),
                later, tuple(tree.consistency_proof(size1, size2)),
            ),
        )  # fmt: skip
    return Built(path, signer, summary, items, batches, bates)


class Unseekable(io.RawIOBase):
    """A file seen as a pipe: the zip must be written with data descriptors."""

    def __init__(self, fh: io.BufferedWriter) -> None:
        self.fh = fh

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        return self.fh.write(b)


class NullSink(io.RawIOBase):
    """A non-seekable sink that counts bytes (the writer must not need to seek)."""

    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.n += len(b)
        return len(b)


def many(n: int, start: datetime = T0 - timedelta(hours=20)) -> Iterator[Spec]:
    """``n`` records of one conversation, a second apart (from 02:30 Paris time)."""
    for i in range(n):
        yield Spec(i, "c_0000", start + timedelta(seconds=i), f"message {i}")
