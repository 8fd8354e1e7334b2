"""Gather: turn the records of a case (or of one data subject) into the writer's
:class:`~archiver.export.model.ExportItem` values, streamed with flat memory.

Two passes:

1. :meth:`Gatherer.plan` takes, for every record id in scope, its index document (as the
   scope walk read it, else from the index; for a media link record, which has none, its
   clear header and its message's document)
   and spools one row (conversation, time, id, the document) to a temporary SQLite file:
   the writer wants records grouped by conversation in time order, and the scope streams
   them in search order. Nothing of the scope is held in memory.
2. :meth:`Gatherer.items` reads the rows back in that order, a page at a time: each
   record's stored bytes (key, version id), its log entry, leaf index and inclusion proof
   against the one checkpoint the package carries, its sealed content opened with its
   data key (or, when the key was destroyed, a tombstone naming the erasure: date and
   request id), the edits, reactions and receipts its index document folds, and its
   attachments (media blobs, decrypted and checked against their SHA-256 on every read).

Raw captures (``include_raw``): every in-scope delivery slot is noted in the spool and
:meth:`Gatherer.raw_batches` yields each stored batch unchanged plus its in-scope slots
decrypted (a slot whose capture key was shredded stays sealed and is reported).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from archiver.errors import ArchiverError, NotFound
from archiver.export.erased import header_document
from archiver.export.model import (
    Attachment,
    Edit,
    Erasure,
    ExportItem,
    LeafProof,
    Participant,
    RawBatch,
    RawSlot,
    Reaction,
    Receipt,
)
from archiver.indexing.documents import FOLDED_TYPES, MESSAGE_KINDS, current_reactions
from archiver.ingest.rawbatch import RawBatchError, parse_batch
from archiver.keys.envelope import DataKey, KeyEncryptionKey, decrypt, envelope_key_id
from archiver.keys.errors import KeysError
from archiver.keys.store import KeyStore
from archiver.keyspace import CAPTURE_KEYS_PREFIX, ERASURES_PREFIX, record_key
from archiver.ledger import merkle
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.log import TransparencyLog
from archiver.ledger.tiles import TILE_WIDTH
from archiver.records.model import Record, RecordError
from archiver.retention.attachments import LINK_KINDS
from archiver.retention.attachments import Attachment as Link
from archiver.retention.common import live_versions
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.identity import person_subjects
from archiver.whatsapp.change import delivery_numbers
from search.errors import SearchError
from search.port import SearchIndex

PAGE = 500
BATES_CHUNK = 5000  # items numbered per allocator call (a call costs ~512 state requests)
READERS = 8  # threads reading records, entries and proofs (I/O bound)
_KEY_CACHE = 512
_EPOCH_TRIES = 5  # a page opened again while erasures keep starting, then the export fails
_NODE_CACHE = 8192  # Merkle nodes (~0.2 KB each): the upper levels serve every proof
_BUNDLE_CACHE = 16  # decoded entry bundles of 256 entries
_LINKS_SLICE = 250  # messages per attachments_of call in the reader threads
# The RSMF/manifest origin names (docs/export.md), from the record header's origin.
ORIGINS = {"customer": "customer", "business_app": "business_app", "business_api": "api",
           "history": "history_sync", "meta": "meta"}  # fmt: skip
_MIME_EXT = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
             "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "video/mp4": ".mp4",
             "application/pdf": ".pdf", "text/plain": ".txt"}  # fmt: skip


class GatherError(ArchiverError):
    code = "export_gather_failed"



@dataclass
class _ErasureIndex:
    """Every erasure procedure that destroyed keys (``erasures/<subject>/<id>``, done or
    past ``shred_keys``), by the records it lists and by each subject id it shredded:
    one listing per export, as ``archiver.export.erased`` reads them."""

    by_record: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_subject: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, state: StateStore) -> _ErasureIndex:
        docs = []
        for key in list(state.list(ERASURES_PREFIX)):
            value = state.get(key)
            if value is None:
                continue
            doc = json.loads(value.value)
            if doc.get("status") == "done" or "shred_keys" in (doc.get("done") or []):
                docs.append(doc)
        out = cls()
        for doc in sorted(docs, key=lambda d: str(d.get("when"))):
            for rid in [*(doc.get("record_ids") or []), *(doc.get("late_record_ids") or [])]:
                out.by_record.setdefault(str(rid), doc)  # the first that erased it
            for member in doc.get("subjects") or [doc.get("subject")]:
                if isinstance(member, str):
                    out.by_subject.setdefault(member, []).append(doc)
        return out

    def of(self, record_id: str, subject: str | None,
           state: StateStore) -> dict[str, Any] | None:  # fmt: skip
        if record_id in self.by_record:
            return self.by_record[record_id]
        if not subject:
            return None
        docs = [d for m in person_subjects(state, subject) for d in self.by_subject.get(m, [])]
        return max(docs, key=lambda d: str(d.get("when"))) if docs else None

def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Memo:
    """A bounded, thread-safe cache where each value is made once even when the reader
    threads ask for it together (they read neighbouring records)."""

    def __init__(self, capacity: int) -> None:
        self._d: OrderedDict[Any, Future[Any]] = OrderedDict()
        self._cap = capacity
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            fut = self._d.get(key)
            mine = fut is None
            if fut is None:
                fut = self._d[key] = Future()
                if len(self._d) > self._cap:
                    self._d.popitem(last=False)
            else:
                self._d.move_to_end(key)
        if mine:
            try:
                fut.set_result(make())
            except BaseException as exc:
                with self._lock:
                    self._d.pop(key, None)  # not cached: the next reader tries again
                fut.set_exception(exc)
        return fut.result()


def _attachment_id(link: Link) -> str:
    return f"{link.link_id}-media"


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the plan, as spooled."""

    seq: int
    record_id: str
    conversation: str
    ts: str
    doc: Mapping[str, Any]  # the index document ({} for a media link record)
    link_of: str | None  # a media link record's message


class Plan:
    """The records in scope, spooled to a temporary SQLite file (flat memory) and read
    back grouped by conversation, in time order. Also the in-scope raw slots."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, conv TEXT, ts TEXT, "
                        "rank INTEGER, rid TEXT UNIQUE, doc TEXT, link_of TEXT)")  # fmt: skip
        self.db.execute("CREATE TABLE raw (key TEXT, version TEXT, slot INTEGER, "
                        "PRIMARY KEY (key, version, slot))")  # fmt: skip
        self.db.execute("CREATE TABLE tx (conv TEXT, seq INTEGER, msg TEXT, "
                        "PRIMARY KEY (conv, seq))")  # fmt: skip
        self.db.execute("BEGIN")
        self.count = 0

    def add(self, record_id: str, conversation: str, ts: str, doc: Mapping[str, Any],
            link_of: str | None) -> None:  # fmt: skip
        cur = self.db.execute(
            "INSERT OR IGNORE INTO r (conv, ts, rank, rid, doc, link_of) VALUES (?,?,?,?,?,?)",
            (conversation, ts, 1 if link_of else 0, record_id, json.dumps(doc), link_of),
        )
        self.count += cur.rowcount

    def done_adding(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("CREATE INDEX r_order ON r (conv, ts, rank, seq)")
        self.db.execute("CREATE INDEX r_link ON r (link_of)")

    def linked(self, record_ids: Sequence[str]) -> list[str]:
        """Those of ``record_ids`` that a media link record of the plan belongs to (the
        scope walk adds every link record of the records it yields)."""
        out: list[str] = []
        for part in _chunked(record_ids, PAGE):
            marks = ",".join("?" * len(part))
            out += [m for (m,) in self.db.execute(
                f"SELECT DISTINCT link_of FROM r WHERE link_of IN ({marks})",  # noqa: S608
                tuple(part))]  # fmt: skip
        return out

    def order(self) -> Iterator[tuple[int, str, str]]:
        """``(seq, record id, kind)`` in the rows' order: what a Bates chunk needs,
        without holding the chunk's documents in memory."""
        cur = self.db.execute("SELECT seq, rid, json_extract(doc, '$.kind') FROM r "
                              "ORDER BY conv, ts, rank, seq")  # fmt: skip
        while batch := cur.fetchmany(PAGE):
            for seq, rid, kind in batch:
                yield seq, rid, str(kind or "")

    def rows_of(self, seqs: Sequence[int]) -> list[Row]:
        """The rows ``seqs``, in that order."""
        marks = ",".join("?" * len(seqs))
        found = {seq: Row(seq, rid, conv, ts, json.loads(doc), link_of)
                 for seq, rid, conv, ts, doc, link_of in self.db.execute(
                     f"SELECT seq, rid, conv, ts, doc, link_of FROM r WHERE seq IN ({marks})",  # noqa: S608
                     tuple(seqs))}  # fmt: skip
        return [found[s] for s in seqs]

    def rows(self) -> Iterator[Row]:
        cur = self.db.execute("SELECT seq, rid, conv, ts, doc, link_of FROM r "
                              "ORDER BY conv, ts, rank, seq")  # fmt: skip
        while batch := cur.fetchmany(PAGE):
            for seq, rid, conv, ts, doc, link_of in batch:
                yield Row(seq, rid, conv, ts, json.loads(doc), link_of)

    def conversations(self) -> list[str]:
        return [c for (c,) in self.db.execute("SELECT DISTINCT conv FROM r ORDER BY conv")]

    def note_raw(self, key: str, version: str, slot: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO raw VALUES (?,?,?)", (key, version, slot))

    def raw_refs(self) -> Iterator[tuple[str, str, list[int]]]:
        cur = self.db.execute("SELECT key, version, group_concat(slot) FROM raw "
                              "GROUP BY key, version ORDER BY key, version")  # fmt: skip
        for key, version, slots in cur.fetchall():
            yield key, version, sorted(int(s) for s in str(slots).split(","))

    def note_message(self, conversation: str, seq: int, message: Mapping[str, Any]) -> None:
        """A transcript line (opened content: lives only in this temporary file)."""
        self.db.execute("INSERT OR REPLACE INTO tx VALUES (?,?,?)",
                        (conversation, seq, json.dumps(message, ensure_ascii=False)))

    def messages(self, conversation: str) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT msg FROM tx WHERE conv = ? ORDER BY seq", (conversation,))
        return [json.loads(m) for (m,) in cur]

    def transcript_conversations(self) -> list[str]:
        return [c for (c,) in self.db.execute("SELECT DISTINCT conv FROM tx ORDER BY conv")]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.path) + suffix).unlink()


@dataclass(slots=True)
class Gathered:
    """One item and what the job needs beside it."""

    item: ExportItem
    seq: int
    subject: str | None  # pseudonym whose content the item holds (None: erased / none)
    message: dict[str, Any] | None  # a transcript line, for message-like records


@dataclass(slots=True)
class GatherStats:
    records: int = 0
    erased: int = 0
    attachments: int = 0
    missing: int = 0  # in scope when listed, gone (disposed) when read
    subjects: set[str] = field(default_factory=set)


class Gatherer:
    """Reads the archive for an export. ``attachments_of(message ids)`` is the holds'
    attachment view (``CaseService.attachments``)."""

    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        index: SearchIndex,
        keys: KeyStore,
        kek: KeyEncryptionKey,
        log: TransparencyLog,
        attachments_of: Callable[[Sequence[str]], list[Link]],
        custodian: str = "",
    ) -> None:
        self.objects, self.state, self.index = objects, state, index
        self.keys, self.kek, self.log = keys, kek, log
        self.attachments_of = attachments_of
        self.custodian = custodian
        self._keys: OrderedDict[str, DataKey | None] = OrderedDict()
        self._erasures: _ErasureIndex | None = None  # read once, at the first tombstone
        self._erasures_lock = threading.Lock()
        self._leaves: dict[str, int] | None = None
        self._leaves_lock = threading.Lock()
        self._latest: int | None = None  # the committed log size the proofs' tiles are read at
        self._nodes = _Memo(_NODE_CACHE)
        self._bundles = _Memo(_BUNDLE_CACHE)
        self._leafless: set[str] = set()  # planned by header: leaf looked up in the log
        self.stats = GatherStats()
        # ``keys/epoch`` before the first key was read (``items``), and every key id whose
        # plaintext went into an item: an erasure that began meanwhile (it raises the epoch
        # before destroying anything) is found by ``keys_destroyed_since_start``.
        self.start_epoch: bytes | None = None
        self.used_keys: set[str] = set()

    # -- pass 1: the plan ------------------------------------------------------------------

    def plan(self, records: Iterable[str | tuple[str, Mapping[str, Any] | None]], path: Path,
             progress: Callable[[int], None] | None = None) -> Plan:  # fmt: skip
        """``records``: ids, or (id, the index document the scope walk read it from): a
        record that comes with its document costs no index read here."""
        plan = Plan(path)
        n = 0
        try:
            with ThreadPoolExecutor(READERS) as pool:
                for chunk in _chunked(records, PAGE):
                    pairs = [(r, None) if isinstance(r, str) else r for r in chunk]
                    bare = [rid for rid, doc in pairs if doc is None]
                    looked = dict(zip(bare, pool.map(self._lookup, bare), strict=True))
                    for rid, doc in pairs:
                        self._plan_row(plan, rid, looked[rid] if doc is None
                                       else (dict(doc), None, None))  # fmt: skip
                    n += len(chunk)
                    if progress is not None:
                        progress(n)
            plan.done_adding()
        except BaseException:
            plan.close()
            raise
        return plan

    def _doc(self, record_id: str) -> dict[str, Any] | None:
        try:
            return self.index.get(record_id)
        except SearchError as exc:
            raise GatherError(f"the index cannot be read: {exc}") from exc

    def _lookup(self, rid: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None,
                                         dict[str, Any] | None]:  # fmt: skip
        """(index document, else the clear header and its message's document)."""
        doc = self._doc(rid)
        if doc is not None:
            return doc, None, None
        header = self._header(rid)
        link_of = (header or {}).get("link_of")
        return None, header, self._doc(str(link_of)) if isinstance(link_of, str) else None

    def _plan_row(self, plan: Plan, rid: str, found: tuple[dict[str, Any] | None,
                  dict[str, Any] | None, dict[str, Any] | None]) -> None:  # fmt: skip
        doc, header, message = found
        if doc is not None:
            ts = str(doc.get("ts") or doc.get("captured_at") or "")
            plan.add(rid, str(doc.get("conversation") or "c_none"), ts, doc, None)
            return
        if header is None:
            self.stats.missing += 1
            return
        link_of = header.get("link_of")
        if message is not None:
            ts = str(message.get("ts") or message.get("captured_at") or "")
            plan.add(rid, str(message.get("conversation") or "c_none"), ts, {}, str(link_of))
        else:  # a record without a document of its own nor a message's: by its own header
            ts = str(header.get("occurred_at") or header.get("captured_at") or "")
            # An erased record (its document deleted): the clear header's document, so it
            # is a tombstone in the transcripts too; its leaf is found in the log.
            self._leafless.add(rid)
            plan.add(rid, str(header.get("conversation") or "c_none"), ts,
                     header_document(header), None)  # fmt: skip

    def _header(self, rid: str) -> dict[str, Any] | None:
        try:
            return dict(self._read(rid)[0].header)
        except NotFound:
            return None

    def _read(self, rid: str) -> tuple[Record, str]:
        key = record_key(rid)
        versions = live_versions(self.objects, key)
        if not versions:
            raise NotFound(f"no record {rid}", code="record_not_found")
        try:
            body = self.objects.get(key, versions[0])
        except ObjectNotFound as exc:
            raise NotFound(f"no record {rid}", code="record_not_found") from exc
        return Record.parse(body), versions[0]

    # -- pass 2: the items -----------------------------------------------------------------

    def items(
        self,
        plan: Plan,
        tree_size: int,
        *,
        number: Callable[[list[str]], None],
        include_media: bool = True,
        include_raw: bool = False,
    ) -> Iterator[Gathered]:
        """Items in the plan's order, proven against the tree of ``tree_size``. Before
        each page is yielded, ``number(ids)`` is called with the page's record and
        attachment ids, each record followed by its attachments (Bates families)."""
        if self.start_epoch is None:
            self.start_epoch = self.keys.epoch()
        with ThreadPoolExecutor(READERS) as pool:
            for chunk in _chunked(plan.order(), BATES_CHUNK):
                # One Bates allocation per chunk (its cost is per call, not per item): every
                # record followed by all its attachments, even when media are left out.
                # The chunk holds ids only; documents are read back a page at a time.
                links: dict[str, list[Link]] = {}
                # Only messages with a link record in the plan have attachments: the walk
                # added them all. One state list per such message, over the readers.
                messages = plan.linked([rid for _, rid, kind in chunk if kind in MESSAGE_KINDS])
                for found in pool.map(self.attachments_of, _chunked(messages, _LINKS_SLICE)):
                    for a in found:
                        if a.blob is not None:
                            links.setdefault(a.message, []).append(a)
                ids: list[str] = []
                for _, rid, _ in chunk:
                    ids.append(rid)
                    ids += [_attachment_id(a) for a in links.get(rid, [])]
                number(ids)
                for start in range(0, len(chunk), PAGE):
                    rows = plan.rows_of([seq for seq, _, _ in chunk[start:start + PAGE]])
                    yield from self._page(plan, rows, tree_size, pool,
                                          links if include_media else {}, include_raw)

    def _fetch(self, row: Row, tree_size: int) -> tuple[Record, str, LeafProof] | None:
        """The record's stored bytes and its leaf proof (run in the reader threads). The
        logged entry names the version: one GET, no version listing per record."""
        leaf = self._leaf(row.record_id, row.doc)
        if leaf >= tree_size:
            raise GatherError(f"record {row.record_id} is not in the signed tree yet")
        entry = self._entry(leaf, tree_size)
        parsed = parse_entry(entry)
        if parsed.key != record_key(row.record_id) or not parsed.version_id:
            raise GatherError(f"record {row.record_id}: its leaf names another object")
        try:
            record = Record.parse(self.objects.get(parsed.key, parsed.version_id))
        except ObjectNotFound:
            return None  # disposed since it was listed
        if (record.key, record.sha256) != (parsed.key, parsed.fields.get("sha256")):
            raise GatherError(f"record {row.record_id}: its leaf names other bytes")
        proof = tuple(merkle.inclusion_proof(leaf, tree_size, self._node))
        return record, parsed.version_id, LeafProof(entry, leaf, proof)

    def _page(self, plan: Plan, rows: list[Row], tree_size: int, pool: ThreadPoolExecutor,
              links: Mapping[str, list[Link]], include_raw: bool) -> Iterator[Gathered]:
        fetched_rows = list(zip(rows, pool.map(lambda r: self._fetch(r, tree_size), rows),
                                strict=True))  # fmt: skip
        for _ in range(_EPOCH_TRIES):
            # The page is opened between two reads of ``keys/epoch``: when an erasure began
            # in between (the epoch moved), keys read before it may be destroyed now, so
            # the cache is dropped and the page opened again (its keys re-read: a
            # destroyed one makes a tombstone). Content never outlives its key's shred.
            before = self.keys.epoch()
            built, used = self._open_page(fetched_rows, links)
            if self.keys.epoch() == before:
                break
            self._keys.clear()
        else:
            raise GatherError("keys are being destroyed faster than the export reads them")
        self.used_keys |= used
        for g, (_row, fetched) in zip(built, [f for f in fetched_rows if f[1] is not None],
                                      strict=True):  # fmt: skip
            if include_raw and g.item.erasure is None and fetched is not None:
                raw = fetched[0].header.get("raw")
                if isinstance(raw, Mapping) and raw.get("key") and raw.get("version_id"):
                    plan.note_raw(str(raw["key"]), str(raw["version_id"]), int(raw.get("slot", 0)))
        self.stats.missing += sum(1 for _, f in fetched_rows if f is None)
        for g in built:
            self.stats.records += 1
            self.stats.attachments += len(g.item.attachments)
            if g.item.erasure is not None:
                self.stats.erased += 1
            if g.subject:
                self.stats.subjects.add(g.subject)
            yield g

    def _open_page(self, fetched_rows: Sequence[tuple[Row, tuple[Record, str, LeafProof] | None]],
                   links: Mapping[str, list[Link]]) -> tuple[list[Gathered], set[str]]:  # fmt: skip
        """The page's items (records opened with their keys), and the key ids opened."""
        built: list[Gathered] = []
        used: set[str] = set()
        for row, fetched in fetched_rows:
            if fetched is None:
                continue
            record, version, proof = fetched
            g = self._item(row, record, version, proof, links.get(row.record_id, []))
            if g.item.erasure is None and "sealed" in record.header:
                used.add(record.key_id)
            built.append(g)
        return built, used

    def keys_destroyed_since_start(self) -> bool:
        """True when a key whose plaintext went into an item (or an attachment) has been
        destroyed since ``items`` began. One epoch read when no erasure began meanwhile."""
        if self.start_epoch is None or self.keys.epoch() == self.start_epoch:
            return False
        for key_id in sorted(self.used_keys):
            try:
                self.keys.get(key_id)
            except KeysError:
                return True
        return False

    def _leaf(self, record_id: str, doc: Mapping[str, Any]) -> int:
        leaf = doc.get("leaf_index")
        if isinstance(leaf, int):
            return leaf
        with self._leaves_lock:
            if self._leaves is None:
                self._leaves = self._scan_leaves()
        try:
            return self._leaves[record_id]
        except KeyError:
            raise GatherError(f"record {record_id} has no leaf in the log") from None

    def _scan_leaves(self) -> dict[str, int]:
        """Leaves of records the index has no document for (media link records, erased
        records): one pass over the log, parsing only entries that name one of them."""
        wanted = tuple(f'"event":"{k}"'.encode() for k in sorted(LINK_KINDS))
        # Records planned by their header (erased: no index document) by their object key.
        keys = {record_key(rid): rid for rid in self._leafless}
        named = re.compile(b"|".join(re.escape(k.encode()) for k in sorted(keys))) if keys else None
        out: dict[str, int] = {}
        size = self.log.size()
        for start in range(0, size, 1000):
            for offset, data in enumerate(self.log.entries(start, min(size, start + 1000))):
                link = any(w in data for w in wanted)
                if not link and (named is None or named.search(data) is None):
                    continue
                entry = parse_entry(data)
                if entry.kind is not EntryKind.RECORD:
                    continue
                if link and entry.fields.get("record_id"):
                    out[str(entry.fields["record_id"])] = start + offset
                elif entry.key in keys:
                    out[keys[entry.key]] = start + offset
        return out

    def _entry(self, leaf: int, tree_size: int) -> bytes:
        """The leaf's entry, from its bundle (one read per bundle of 256 while it stays
        in the small cache: records of a conversation often sit in neighbouring leaves)."""
        b = leaf // TILE_WIDTH

        def load() -> list[bytes]:
            return self.log.entries(b * TILE_WIDTH, min(tree_size, (b + 1) * TILE_WIDTH),
                                    tree_size)  # fmt: skip

        bundle: list[bytes] = self._bundles.get((tree_size, b), load)
        return bundle[leaf % TILE_WIDTH]

    def _node(self, level: int, index: int) -> bytes:
        """A perfect subtree's hash, read from the tiles of the committed tree (pinned
        once per export: tiles of a committed size never change) and kept in a bounded
        cache: the upper nodes are on every record's proof."""
        if self._latest is None:
            self._latest = self.log.size()
        latest = self._latest
        node: bytes = self._nodes.get((level, index),
                                      lambda: self.log.node(level, index, latest))  # fmt: skip
        return node

    def _key(self, key_id: str) -> DataKey | None:
        """The data key, or None when it was destroyed (erasure)."""
        if key_id in self._keys:
            self._keys.move_to_end(key_id)
            return self._keys[key_id]
        try:
            key: DataKey | None = self.keys.get(key_id)
        except KeysError:
            key = None
        self._keys[key_id] = key
        if len(self._keys) > _KEY_CACHE:
            self._keys.popitem(last=False)
        return key

    def _erasure(self, subject: str | None, record_id: str) -> Erasure:
        """The erasure procedure that destroyed the record's key: its date and id. By the
        record id first: a procedure lists every record it made unreadable (its late ones
        too), whichever subject id of the person sealed it (a merged phone and BSUID) and
        a subject-less record of a shared delivery. Else the latest procedure of any
        subject id of the record's person. ``unknown`` only when none names it."""
        with self._erasures_lock:
            if self._erasures is None:
                self._erasures = _ErasureIndex.load(self.state)
            found = self._erasures.of(record_id, subject, self.state)
        if found is None:
            return Erasure(datetime.now(UTC), "unknown")
        return Erasure(_ts(found.get("when")) or datetime.now(UTC), str(found["id"]))

    def _item(self, row: Row, record: Record, version: str, proof: LeafProof,
              links: list[Link]) -> Gathered:  # fmt: skip
        header = record.header
        doc = row.doc
        business = header.get("business") or {}
        pnid = str(business.get("phone_number_id") or "business")
        biz = Participant(pnid, str(business.get("display_phone_number") or doc.get(
            "business_number") or pnid))
        subject = header.get("subject") if isinstance(header.get("subject"), str) else None
        key = self._key(record.key_id) if "sealed" in header else None
        event: dict[str, Any] | None = None
        if key is not None:
            try:
                event = dict(record.open(key.secret).get("event") or {})
            except RecordError as exc:
                raise GatherError(f"record {record.record_id} does not open: {exc}") from exc
        contact = (event or {}).get("contact") or {}
        handle = str(contact.get("wa_id") or contact.get("user_id") or "")
        name = str(doc.get("contact_name") or contact.get("name") or "")
        display = f"{name} ({handle})" if name and handle else (name or handle or "contact")
        person = Participant(subject or f"contact-{row.conversation}", display)
        direction = str(header.get("direction") or doc.get("direction") or "")
        origin = ORIGINS.get(str(header.get("origin") or ""), str(header.get("origin") or ""))
        if direction not in ("inbound", "outbound"):
            direction = "outbound" if origin in ("business_app", "api") else "inbound"
        sender, to = (person, biz) if direction == "inbound" else (biz, person)
        when = (_ts(header.get("occurred_at")) or _ts(header.get("captured_at"))
                or _ts(row.ts) or datetime.now(UTC))  # fmt: skip
        row_time = _ts(row.ts)
        if row_time is not None and row.link_of:
            when = row_time  # a link record sits beside its message
        common: dict[str, Any] = {
            "record_id": record.record_id, "kind": str(header.get("kind") or "record"),
            "conversation_id": row.conversation,
            "conversation_display": f"{display} \u2194 {biz.display}",
            "timestamp": when, "direction": direction, "origin": origin or "unknown",
            "sender": sender, "recipients": (to,), "record_json": record.body,
            "record_sha256": record.sha256, "object_key": record.key, "version_id": version,
            "leaf": proof, "custodian": self.custodian,
        }  # fmt: skip
        if "sealed" in header and event is None:
            erasure = self._erasure(subject, record.record_id)
            return Gathered(ExportItem(**common, erasure=erasure), row.seq, None,
                            self._line(row, common, None, erasure))  # fmt: skip
        text = "\n".join(t for t in (event or {}).get("texts") or [] if isinstance(t, str) and t)
        if row.link_of:
            media = header.get("media") or header.get("missing") or {}
            text = (f"[Media of message {row.link_of}: {media.get('mime_type', 'unknown')}, "
                    f"{media.get('size', '?')} bytes, sha256 {media.get('sha256', '?')}]")
        atts = tuple(a for a in (self._attachment(link, event) for link in links) if a)
        item = ExportItem(
            **common, text=text, attachments=atts,
            edits=self._edits(doc, sender.id, text), reactions=self._reactions(doc, person, biz),
            receipts=self._receipts(doc, to.id), revoked=bool(doc.get("revoked")),
        )  # fmt: skip
        return Gathered(item, row.seq, subject, self._line(row, common, item, None))

    @staticmethod
    def _edits(doc: Mapping[str, Any], who: str, original: str) -> tuple[Edit, ...]:
        out = []
        previous = original
        for e in doc.get("edits") or []:
            at = _ts(e.get("at"))
            if at is None:
                continue
            new = str(e.get("text") or "")
            out.append(Edit(who, at, previous, new))
            previous = new
        return tuple(out)

    @staticmethod
    def _reactions(doc: Mapping[str, Any], person: Participant,
                   biz: Participant) -> tuple[Reaction, ...]:  # fmt: skip
        return tuple(
            Reaction(person.id if r.get("direction") == "inbound" else biz.id,
                     str(r["emoji"]), _ts(r.get("at")))
            for r in current_reactions(doc.get("reactions"))
        )  # fmt: skip

    @staticmethod
    def _receipts(doc: Mapping[str, Any], who: str) -> tuple[Receipt, ...]:
        times = doc.get("status_times") or {}
        out = []
        for action in ("delivered", "read"):
            at = _ts(times.get(action))
            if at is not None:
                out.append(Receipt(who, cast(Any, action), at))
        return tuple(out)

    def _attachment(self, link: Link, event: Mapping[str, Any] | None) -> Attachment | None:
        """A media blob of a message: decrypted on each read, its hash checked by the
        writer against the link record's plaintext SHA-256."""
        try:
            header = Record.parse(self.objects.get(*link.link)).header
        except (ObjectNotFound, RecordError):
            return None
        media = header.get("media") or {}
        sha = str(media.get("sha256") or "")
        if link.blob is None or len(sha) != 64:
            return None
        mime = str(media.get("mime_type") or "application/octet-stream")
        index = int(media.get("index") or 0)
        name = ""
        items = (event or {}).get("media") or []
        if isinstance(items, list) and 0 <= index < len(items) and isinstance(items[index], dict):
            name = str(items[index].get("filename") or "")
        name = name or f"media-{index}{_MIME_EXT.get(mime.split(';')[0], '.bin')}"
        blob_key, blob_version = link.blob

        def source() -> IO[bytes]:
            import io

            blob = self.objects.get(blob_key, blob_version)
            key = self._key(envelope_key_id(blob))
            if key is None:
                raise GatherError(f"the key of {blob_key} was destroyed")
            self.used_keys.add(key.key_id)  # checked after the package is written
            return io.BytesIO(decrypt(key, blob, aad=blob_key.encode()))

        size = media.get("size")
        return Attachment(_attachment_id(link), name, mime, sha, cast(Any, source),
                          size=int(size) if isinstance(size, int) else None)  # fmt: skip

    @staticmethod
    def _line(row: Row, common: Mapping[str, Any], item: ExportItem | None,
              erasure: Erasure | None) -> dict[str, Any] | None:  # fmt: skip
        """A transcript line for a message-like record (JSON, for the spool)."""
        doc = row.doc
        if row.link_of or doc.get("kind") not in MESSAGE_KINDS or doc.get("type") in FOLDED_TYPES:
            return None
        sender: Participant = common["sender"]
        line: dict[str, Any] = {
            "record_id": common["record_id"], "sent_at": common["timestamp"].isoformat(),
            "sender": sender.id if erasure else sender.display,
            "from_business": common["direction"] == "outbound", "origin": common["origin"],
        }  # fmt: skip
        if erasure is not None:
            line["tombstone"] = [erasure.erased_at.isoformat(), erasure.request_id]
            return line
        assert item is not None
        line.update({
            "text": item.text or "",
            "attachments": [a.name for a in item.attachments],
            "edits": [[e.timestamp.isoformat(), e.previous, e.new] for e in item.edits],
            "reactions": [f"{r.emoji} by {r.participant}" for r in item.reactions],
            "status": ", ".join(f"{r.action} {r.timestamp.isoformat()}" for r in item.receipts),
            "revoked_at": doc.get("revoked_at") if item.revoked else None,
        })  # fmt: skip
        return line

    # -- raw captures ----------------------------------------------------------------------

    def raw_batches(self, plan: Plan, on_error: Callable[[str, str], None],
                    numbers: Collection[str] | None = None) -> Iterator[RawBatch]:  # fmt: skip
        """Each stored batch with an in-scope slot, unchanged, plus those slots decrypted
        (their capture keys from working state). A slot whose key was shredded stays
        sealed (``on_error(code, message)``), and so does a delivery that also concerns a
        business number outside ``numbers`` (None: every number): one delivery may carry
        changes of several numbers, and decrypting it would hand another number's
        messages to this export."""
        for key, version, slots in plan.raw_refs():
            try:
                data = self.objects.get(key, version)
                opened = parse_batch(data)
            except (ObjectNotFound, RawBatchError) as exc:
                on_error("raw_batch_unreadable", f"{key}: {exc}")
                continue
            value = self.state.get(CAPTURE_KEYS_PREFIX + opened.batch_id)
            wrapped: dict[str, str] = json.loads(value.value)["keys"] if value else {}
            out = []
            for slot in slots:
                blob = wrapped.get(str(slot))
                if blob is None:
                    on_error("raw_slot_shredded", f"{key} slot {slot}: its key was destroyed")
                    continue
                import base64

                body = opened.open(slot, self.kek.unwrap(base64.b64decode(blob)))
                if hashlib.sha256(body).hexdigest() != opened.slots[slot].sha256:
                    raise GatherError(f"{key} slot {slot} does not match its header")
                if numbers is not None:
                    concerns = delivery_numbers(body)
                    if concerns is None or not concerns <= set(numbers):
                        on_error("raw_slot_out_of_scope", f"{key} slot {slot}: the delivery "
                                 "also concerns numbers outside the export; left sealed")
                        continue
                out.append(RawSlot(slot, body))
            yield RawBatch(key, version, data, tuple(out))
