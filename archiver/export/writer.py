"""The package writer: one zip written as a stream to a caller's sink, memory flat.

Use (two phases, because the package carries the proof of its own log leaf)::

    w = PackageWriter(sink, info, log_bundle, bates)
    for item in items:              # grouped by conversation, in time order
        w.add(item)
    w.add_raw_batch(batch)          # any time before records_list_digest()
    w.add_transcript(transcript)    # idem (pre-rendered PDF, page count, first Bates)
    digest = w.records_list_digest()          # closes the record phase
    seal = w.seal(custody_events)             # load file + chain of custody; the digests
    # caller: log an ``export`` leaf naming case, query, counts, ``records_sha256`` and
    # ``seal.entry_fields()`` (files, raw batches, manifest head: the leaf binds every
    # byte of the package), sign a later checkpoint, get the leaf's inclusion and the
    # consistency proof
    summary = w.finish(ExportLeaf(...))

Nothing kept in memory grows with the number of records: the record list, file list,
raw-batch list, load file and even :mod:`zipfile`'s central-directory entries are spooled
to temporary files and copied into the zip at the end; the names written (to refuse one
twice) and the conversations seen are in a SQLite file in the spool; an RSMF slice (at
most 10,000 events) is built in a temporary zip.
Every file's SHA-256 is computed while it is written.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sqlite3
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from archiver.export import dat, layout, rsmf
from archiver.export.batches import batch_name, slot_hashes
from archiver.export.errors import ExportInputError, ExportStateError
from archiver.export.manifest import b64, head_digest, leaf_fields, log_fields, record_line
from archiver.export.model import (
    Attachment,
    CustodyEvent,
    ExportInfo,
    ExportItem,
    ExportLeaf,
    LogBundle,
    PackageSeal,
    Participant,
    RawBatch,
    Transcript,
    open_source,
)
from archiver.records import canonical

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PackageSummary:
    records: int
    attachments: int
    erased: int
    rsmf_files: int
    raw_batches: int
    transcripts: int
    files: int
    records_sha256: str


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    while chunk := source.read(CHUNK):
        yield chunk


class _SpooledInfos:
    """Stands in for ``ZipFile.filelist``: zipfile only appends each finished entry and,
    at close, iterates them once (and asks how many) to write the central directory.
    Kept on disk, the directory costs no memory per file (measured: ~575 bytes a file
    in memory otherwise)."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("w+b")
        self._n = 0

    def append(self, zinfo: zipfile.ZipInfo) -> None:
        pickle.dump(zinfo, self._f, protocol=pickle.HIGHEST_PROTOCOL)
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        self._f.flush()
        self._f.seek(0)
        for _ in range(self._n):
            # Our own temporary file, written above by this process: not untrusted data.
            yield pickle.load(self._f)  # noqa: S301

    def close(self) -> None:
        self._f.close()


class _SeenNames:
    """Stands in for ``ZipFile.NameToInfo`` while writing: zipfile stores each name and
    tests membership (to warn of duplicates). The names live in a SQLite file in the
    spool (three or more files a record: a set in memory would grow with the export),
    beside the conversations already written (``add_conversation``)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-4096"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE n (k BLOB PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("CREATE TABLE c (k TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")  # a scratch file: never committed, deleted with the spool

    @staticmethod
    def _key(name: str) -> bytes:
        return hashlib.blake2b(name.encode(), digest_size=16).digest()

    def __setitem__(self, name: str, _zinfo: zipfile.ZipInfo) -> None:
        self._db.execute("INSERT OR IGNORE INTO n VALUES (?)", (self._key(name),))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._db.execute(
            "SELECT 1 FROM n WHERE k = ?", (self._key(name),)).fetchone() is not None

    def get(self, name: str, default: object = None) -> object:
        return default

    def add_conversation(self, conversation: str) -> bool:
        """True when ``conversation`` was not written before."""
        return self._db.execute("INSERT OR IGNORE INTO c VALUES (?)",
                                (conversation,)).rowcount == 1  # fmt: skip

    def close(self) -> None:
        self._db.close()


class _Slice:
    """One RSMF file being built: a conversation's events of one day (≤ 10,000)."""

    def __init__(self, spool: Path, conversation: str, display: str, day: date, part: int,
                 custodian: str) -> None:  # fmt: skip
        self.conversation, self.display, self.day, self.part = conversation, display, day, part
        self.custodian = custodian
        self.dir = Path(tempfile.mkdtemp(prefix="rsmf-", dir=spool))
        self.events = (self.dir / "events.jsonl").open("w+b")
        self.zip = zipfile.ZipFile(self.dir / "rsmf.zip", "w", zipfile.ZIP_DEFLATED)
        self.participants: dict[str, Participant] = {}
        self.count = 0
        self.begin = ""
        self.end = ""

    def close(self) -> None:
        self.events.close()
        self.zip.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(slots=True)
class _Counts:
    records: int = 0
    attachments: int = 0
    erased: int = 0
    rsmf_files: int = 0
    raw_batches: int = 0
    transcripts: int = 0
    files: int = 0
    conversations: int = 0


class PackageWriter:
    """Writes an export package to ``sink`` (any binary file object; need not seek).

    ``bates`` maps every record id and attachment id to its number (the case's allocator
    assigns them; a record's attachments follow it contiguously). Raises
    ExportInputError for inconsistent input and ExportStateError for calls out of order.
    """

    def __init__(
        self,
        sink: BinaryIO,
        info: ExportInfo,
        log: LogBundle,
        bates: Mapping[str, int],
        *,
        validate_rsmf: bool = True,
        spool_dir: Path | None = None,
    ) -> None:
        try:
            self._tz = ZoneInfo(info.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ExportInputError(f"unknown time zone {info.time_zone!r}") from exc
        self.info, self.log, self.bates = info, log, bates
        self.validate_rsmf = validate_rsmf
        self._spool = Path(tempfile.mkdtemp(prefix="wa-export-", dir=spool_dir))
        self._zip = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self._infos = _SpooledInfos(self._spool / "central.bin")
        self._zip.filelist = self._infos  # type: ignore[assignment]  # see _SpooledInfos
        self._names_db = _SeenNames(self._spool / "names.db")
        self._zip.NameToInfo = self._names_db  # type: ignore[assignment]  # see _SeenNames
        self._stamp = info.exported_at.astimezone(self._tz).timetuple()[:6]
        self._files = (self._spool / "files.jsonl").open("w+b")
        self._records = (self._spool / "records.jsonl").open("w+b")
        self._raw = (self._spool / "raw.jsonl").open("w+b")
        self._dat = (self._spool / "loadfile.dat").open("w+", encoding="utf-8", newline="")
        self._dat.write(dat.header())
        self._digest = hashlib.sha256()
        # The file and raw-batch lists' digests (manifest.records_digest), kept as written.
        self._files_digest = hashlib.sha256()
        self._raw_digest = hashlib.sha256()
        self._seal: PackageSeal | None = None
        self._slice: _Slice | None = None
        self._last: tuple[str, Any] | None = None  # (conversation, timestamp) of the last item
        self._counts = _Counts()
        self._records_closed = False
        self._done = False

    # -- context --------------------------------------------------------------------------

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def close(self) -> None:
        """Release temporary files (after finish, or to abandon a failed package)."""
        if self._slice is not None:
            self._slice.close()
            self._slice = None
        for f in (self._files, self._records, self._raw, self._dat):
            f.close()
        if not self._done:
            self._zip.close()  # an abandoned package is an incomplete zip; the caller drops it
            self._done = True
        self._infos.close()
        self._names_db.close()
        shutil.rmtree(self._spool, ignore_errors=True)

    # -- zip entries ----------------------------------------------------------------------

    def _write(
        self, path: str, chunks: Iterable[bytes], *, compress: bool = True
    ) -> tuple[str, int]:
        if path in self._zip.NameToInfo:
            raise ExportInputError(f"{path} would be written twice")
        zinfo = zipfile.ZipInfo(path, self._stamp)
        zinfo.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        zinfo.external_attr = 0o644 << 16
        h = hashlib.sha256()
        size = 0
        with self._zip.open(zinfo, "w", force_zip64=True) as out:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                out.write(chunk)
        digest = h.hexdigest()
        entry = {"path": path, "sha256": digest, "size": size}
        self._files.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        self._files_digest.update(record_line(entry))
        self._counts.files += 1
        return digest, size

    def _copy_attachment(self, att: Attachment, path: str, target: Any) -> int:
        """Stream an attachment to ``path`` (outer zip) or into ``target`` (a slice's
        zip), checking its SHA-256. Returns its size."""
        with open_source(att.source) as src:
            if target is None:
                digest, size = self._write(path, _chunks(src), compress=False)
            else:
                h = hashlib.sha256()
                size = 0
                # Plain zip headers when the size is known to be small: some review
                # platforms' readers take ZIP64 less kindly than the outer package's.
                big = att.size is None or att.size > 1 << 30
                with target.open(path, "w", force_zip64=big) as out:
                    for chunk in _chunks(src):
                        h.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                digest = h.hexdigest()
        if digest != att.sha256:
            raise ExportInputError(f"attachment {att.id}: bytes do not match its sha256")
        return size

    # -- records --------------------------------------------------------------------------

    def _bates_family(self, item: ExportItem) -> tuple[int, list[int]]:
        try:
            first = int(self.bates[item.record_id])
            atts = [int(self.bates[a.id]) for a in item.attachments]
        except KeyError as exc:
            raise ExportInputError(f"no Bates number for {exc.args[0]}") from None
        # BEGATTACH..ENDATTACH must span the family and nothing else: the allocator numbers
        # a record and all its attachments in one call (even when media are left out).
        if sorted(atts) != list(range(first + 1, first + 1 + len(atts))):
            raise ExportInputError(
                f"record {item.record_id}: attachments' Bates numbers must follow the "
                f"record's ({first}) contiguously, got {atts}"
            )
        return first, atts

    def _check_order(self, item: ExportItem) -> None:
        if self._records_closed or self._done:
            raise ExportStateError("records can no longer be added")
        if self._last is not None and self._last[0] == item.conversation_id:
            if item.timestamp < self._last[1]:
                raise ExportInputError(
                    f"record {item.record_id} is older than the one before it: items of a "
                    "conversation must come in time order"
                )
        elif not self._names_db.add_conversation(item.conversation_id):
            raise ExportInputError(
                f"conversation {item.conversation_id} came back: items must be grouped "
                "by conversation"
            )
        else:
            self._counts.conversations += 1
        self._last = (item.conversation_id, item.timestamp)

    def add(self, item: ExportItem) -> None:
        """Write one record in every format. Raises ExportInputError / ExportStateError;
        after an error the package is incomplete: close the writer and drop the sink."""
        self._check_order(item)
        first, att_numbers = self._bates_family(item)
        bates = self.info.bates
        erased = item.erasure is not None
        native = layout.record_native(item.record_id)
        self._write(native, [item.record_json])
        text_path = layout.record_text(item.record_id)
        self._write(text_path, [self._text(item).encode()])

        slice_ = self._slice_for(item)
        att_meta: list[dict[str, Any]] = []
        rsmf_files: list[tuple[str, str, int]] = []
        for att, number in zip(item.attachments, att_numbers, strict=True):
            path = layout.attachment_native(item.record_id, att.id, att.name)
            size = self._copy_attachment(att, path, None)
            inner = layout.rsmf_attachment(att.id, att.name)
            self._copy_attachment(att, inner, slice_.zip)
            rsmf_files.append((inner, att.name, size))
            att_meta.append({"id": att.id, "bates": bates(number), "path": path,
                             "sha256": att.sha256, "size": size, "mime_type": att.mime_type})
        self._add_event(slice_, item, bates(first), rsmf_files)

        record: dict[str, Any] = {
            "record_id": item.record_id,
            "kind": item.kind,
            "conversation": item.conversation_id,
            "object_key": item.object_key,
            "version_id": item.version_id,
            "sha256": item.record_sha256,
            "size": len(item.record_json),
            **leaf_fields(item.leaf),
            "native": native,
            "text": text_path,
            "bates": bates(first),
            "attachments": att_meta,
            "erased": None if item.erasure is None else {
                "erased_at": item.erasure.erased_at.isoformat(),
                "request_id": item.erasure.request_id,
            },
        }  # fmt: skip
        line = record_line(record)
        self._digest.update(line)
        self._records.write(line)

        end = att_numbers[-1] if att_numbers else first
        names = self._names(item)
        common = {
            "BEGATTACH": bates(first), "ENDATTACH": bates(end), "CUSTODIAN": item.custodian,
            "DATESENT": rsmf.local_time(item.timestamp, self._tz),
            "FROM": names[0], "TO": "; ".join(names[1:]),
            "CONVERSATION": item.conversation_display if not erased else item.conversation_id,
            "ERASED": item.erasure.describe() if item.erasure is not None else "",
        }  # fmt: skip
        self._dat.write(dat.row_line({
            **common, "BEGBATES": bates(first), "ENDBATES": bates(first), "DOCTYPE": "record",
            "RECORDID": item.record_id, "SHA256": item.record_sha256, "NATIVEPATH": native,
            "TEXTPATH": text_path,
        }))  # fmt: skip
        for meta in att_meta:
            self._dat.write(dat.row_line({
                **common, "BEGBATES": meta["bates"], "ENDBATES": meta["bates"],
                "DOCTYPE": "attachment", "RECORDID": item.record_id, "SHA256": meta["sha256"],
                "NATIVEPATH": meta["path"],
            }))  # fmt: skip
        self._counts.records += 1
        self._counts.attachments += len(att_meta)
        self._counts.erased += erased

    def _names(self, item: ExportItem) -> list[str]:
        people = [item.sender, *item.recipients]
        if item.erasure is not None:  # a tombstone names ids, never a person's name
            return [p.id for p in people]
        return [f"{p.display} ({p.id})" if p.display and p.display != p.id else p.id
                for p in people]  # fmt: skip

    def _text(self, item: ExportItem) -> str:
        if item.erasure is not None:
            return item.erasure.describe() + "\n"
        parts = [item.text or ""]
        for e in item.edits:
            parts.append(f"[Edited {rsmf.local_time(e.timestamp, self._tz)}: {e.new}]")
        if item.revoked:
            parts.append("[Revoked by the sender; kept by the archive.]")
        for a in item.attachments:
            parts.append(f"[Attachment: {a.name} ({a.mime_type})]")
        return "\n".join(parts) + "\n"

    # -- RSMF slices ----------------------------------------------------------------------

    def _slice_for(self, item: ExportItem) -> _Slice:
        day = item.timestamp.astimezone(self._tz).date()
        s = self._slice
        if s is not None and s.conversation == item.conversation_id and s.day == day:
            if s.count < rsmf.MAX_EVENTS:
                return s
            part = s.part + 1
        else:
            part = 1
        if s is not None:
            self._close_slice()
        # A slice opened by a tombstone shows the conversation id, not a person's name.
        display = item.conversation_id if item.erasure else item.conversation_display
        self._slice = _Slice(self._spool, item.conversation_id, display, day, part,
                             item.custodian)  # fmt: skip
        return self._slice

    def _add_event(self, s: _Slice, item: ExportItem, bates: str,
                   files: Sequence[tuple[str, str, int]]) -> None:  # fmt: skip
        people = [item.sender, *item.recipients]
        for p in people:
            if item.erasure is not None:
                p = Participant(p.id, p.id)
            s.participants.setdefault(p.id, p)
        for pid in [*(e.participant for e in item.edits), *(r.participant for r in item.reactions),
                    *(r.participant for r in item.receipts)]:  # fmt: skip
            s.participants.setdefault(pid, Participant(pid, pid))
        ev = rsmf.event(item, self._tz, bates, files)
        s.events.write(json.dumps(ev, ensure_ascii=False).encode() + b"\n")
        s.count += 1
        s.begin = s.begin or ev["timestamp"]
        s.end = ev["timestamp"]

    def _close_slice(self) -> None:
        s = self._slice
        if s is None:
            return
        self._slice = None
        try:
            s.events.seek(0)
            events = [json.loads(line) for line in s.events]
            collection = rsmf.collection_id(self.info.case_id, s.conversation)
            doc = rsmf.manifest(events, s.participants, s.conversation, s.display,
                                collection, s.custodian)  # fmt: skip
            if self.validate_rsmf:
                rsmf.validate(doc)
            s.zip.writestr(rsmf.MANIFEST_NAME, json.dumps(doc, ensure_ascii=False))
            s.zip.close()
            boundary = f"rsmf-{uuid.uuid4().hex}"
            head = rsmf.envelope_head(
                subject=f"WhatsApp: {s.display} {s.day.isoformat()} part {s.part}",
                day=s.day.isoformat(), events=s.count, collection=collection,
                custodian=s.custodian, boundary=boundary, begin=s.begin, end=s.end,
            )  # fmt: skip

            def body() -> Iterator[bytes]:
                yield head
                with (s.dir / "rsmf.zip").open("rb") as z:
                    first = True
                    while chunk := z.read(rsmf.B64_CHUNK):
                        yield (b"" if first else b"\r\n") + rsmf.b64_lines(chunk)
                        first = False
                yield rsmf.envelope_tail(boundary)

            self._write(layout.rsmf_slice(s.conversation, s.day, s.part), body())
            self._counts.rsmf_files += 1
        finally:
            s.close()

    # -- raw batches and transcripts ------------------------------------------------------

    def add_raw_batch(self, batch: RawBatch) -> None:
        """The stored batch unchanged plus its in-scope slots decrypted, each checked
        against the batch header's SHA-256. Raises ExportInputError on a mismatch."""
        if self._records_closed or self._done:
            raise ExportStateError("raw batches can no longer be added")
        hashes = slot_hashes(batch.data)
        name = batch_name(batch.key)
        slots = []
        for slot in batch.slots:
            want = hashes.get(slot.index)
            if want is None or hashlib.sha256(slot.body).hexdigest() != want:
                raise ExportInputError(
                    f"slot {slot.index} of {batch.key} does not match the batch header"
                )
            path = layout.raw_slot(name, slot.index)
            self._write(path, [slot.body])
            slots.append({"index": slot.index, "sha256": want, "path": path})
        path = layout.raw_batch(name)
        digest, size = self._write(path, [batch.data], compress=False)
        line = {"key": batch.key, "version_id": batch.version_id, "sha256": digest,
                "size": size, "path": path, "slots": slots}  # fmt: skip
        self._raw.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        self._raw_digest.update(record_line(line))
        self._counts.raw_batches += 1

    def add_transcript(self, t: Transcript) -> None:
        """A pre-rendered transcript PDF: its file and a DAT row with its page range."""
        if self._seal is not None or self._done:
            raise ExportStateError("the package is finished")
        path = layout.transcript(t.conversation_id)
        with open_source(t.source) as src:
            digest, _ = self._write(path, _chunks(src), compress=False)
        bates = self.info.bates
        first, last = bates(t.first_bates), bates(t.first_bates + t.pages - 1)
        self._dat.write(dat.row_line({
            "BEGBATES": first, "ENDBATES": last, "BEGATTACH": first, "ENDATTACH": last,
            "DOCTYPE": "transcript", "CUSTODIAN": t.custodian,
            "CONVERSATION": t.conversation_id, "SHA256": digest, "TRANSCRIPTPATH": path,
        }))  # fmt: skip
        self._counts.transcripts += 1

    def add_document(self, name: str, chunks: Iterable[bytes]) -> None:
        """A readable document beside the formats (a subject access request's JSON), at
        ``layout.document(name)``; listed and hashed in the manifest like every file."""
        if self._seal is not None or self._done:
            raise ExportStateError("the package is finished")
        self._write(layout.document(name), chunks)

    # -- the two closing phases -----------------------------------------------------------

    def records_list_digest(self) -> str:
        """Close the record phase; the SHA-256 (hex) of the manifest's record list, for the
        caller's ``export`` log leaf (``records_sha256``)."""
        if not self._records_closed:
            self._close_slice()
            self._records_closed = True
        return self._digest.hexdigest()

    @property
    def counts(self) -> dict[str, int]:
        c = self._counts
        return {"records": c.records, "attachments": c.attachments, "erased": c.erased,
                "conversations": c.conversations, "rsmf_files": c.rsmf_files,
                "raw_batches": c.raw_batches, "transcripts": c.transcripts}  # fmt: skip

    def seal(self, custody: Sequence[CustodyEvent]) -> PackageSeal:
        """Write the load file and the chain of custody (the last files but the manifest)
        and return the digests the caller's ``export`` leaf must name besides
        ``records_sha256`` (``PackageSeal.entry_fields()``): with them the logged leaf
        binds every file of the package and the manifest's head, not only the sealed
        natives. Raises ExportStateError before ``records_list_digest`` or twice."""
        if not self._records_closed:
            raise ExportStateError("call records_list_digest() first")
        if self._seal is not None or self._done:
            raise ExportStateError("the package is already sealed")
        digest = self._digest.hexdigest()
        self._dat.flush()
        with open(self._dat.name, "rb") as f:
            self._write(layout.LOADFILE, _chunks(f))
        i = self.info
        custody_doc = {
            "case": {"id": i.case_id, "name": i.case_name, "matter_number": i.matter_number},
            "exported_by": i.exported_by,
            "exported_at": i.exported_at.isoformat(),
            "query": i.query,
            "counts": self.counts,
            "records_sha256": digest,
            "events": [
                {"time": e.time.isoformat(), "actor": e.actor, "action": e.action,
                 "details": e.details}
                for e in custody
            ],
        }  # fmt: skip
        self._write(layout.CUSTODY, [json.dumps(custody_doc, indent=1, default=str).encode()])
        self._seal = PackageSeal(self._files_digest.hexdigest(), self._raw_digest.hexdigest(),
                                 head_digest(self._head()))  # fmt: skip
        return self._seal

    def finish(self, export: ExportLeaf) -> PackageSummary:
        """Write the manifest and close the zip. ``export``: the export's leaf (naming
        ``records_sha256`` and the seal's digests) proven against a later checkpoint,
        with the consistency proof from the package's checkpoint. Raises
        ExportStateError before ``seal`` or twice."""
        if self._seal is None:
            raise ExportStateError("call records_list_digest() and seal(), and log the "
                                   "export first")  # fmt: skip
        if self._done:
            raise ExportStateError("the package is finished")
        if export.later.origin != self.log.origin:
            raise ExportInputError("the later checkpoint is of another log")
        if export.later.tree_size <= export.leaf.leaf_index:
            raise ExportInputError("the later checkpoint does not cover the export leaf")
        digest = self._digest.hexdigest()
        self._write_manifest(export, digest)
        self._zip.close()
        self._done = True
        c = self._counts
        return PackageSummary(c.records, c.attachments, c.erased, c.rsmf_files,
                              c.raw_batches, c.transcripts, c.files, digest)  # fmt: skip

    def _head(self) -> dict[str, Any]:
        """The manifest without the export leaf and the three lists (its digest is the
        leaf's ``head_sha256``)."""
        i = self.info
        return {
            "format": layout.FORMAT,
            "case": {"id": i.case_id, "name": i.case_name, "matter_number": i.matter_number},
            "exported_by": i.exported_by,
            "exported_at": i.exported_at.isoformat(),
            "query": i.query,
            "time_zone": i.time_zone,
            "bates_prefix": i.bates_prefix,
            "counts": self.counts,
            "log": log_fields(self.log),
        }

    def _write_manifest(self, export: ExportLeaf, digest: str) -> None:
        head = {
            **self._head(),
            "export": {
                **leaf_fields(export.leaf),
                "records_sha256": digest,
                "checkpoint": log_fields(export.later),
                "consistency": [b64(h) for h in export.consistency],
            },
        }
        for f in (self._files, self._raw, self._records):
            f.flush()

        def lines(f: IO[bytes]) -> Iterator[bytes]:
            f.seek(0)
            first = True
            for line in f:
                yield (b"" if first else b",\n") + line.rstrip(b"\n")
                first = False

        def body() -> Iterator[bytes]:
            yield canonical.dumps(head)[:-1]  # the object stays open for the three lists
            for name, f in (("files", self._files), ("raw_batches", self._raw),
                            ("records", self._records)):  # fmt: skip
                yield f',\n"{name}":[\n'.encode()
                yield from lines(f)
                yield b"\n]"
            yield b"}\n"

        zinfo = zipfile.ZipInfo(layout.MANIFEST, self._stamp)
        zinfo.compress_type = zipfile.ZIP_DEFLATED
        with self._zip.open(zinfo, "w", force_zip64=True) as out:
            for chunk in body():
                out.write(chunk)
