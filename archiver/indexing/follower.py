"""The index follows the archive: a durable cursor over the proof log.

Working-state keys (all per *generation*, so a rebuild never disturbs the live index)::

    index/active                      name of the generation the app follows ("live")
    index/cursor/<gen>                next leaf index to index
    index/folds/<gen>/<target>        folds waiting for a message not indexed yet
    index/consent/<gen>/<subject>     the subject's consent state so far in the log
    index/names/<gen>/<subject>       the contact's name from contact sync (a remove deletes it)

``catch_up`` reads the log from the cursor, turns record leaves into documents and
folds, upserts them (idempotent by id), then advances the cursor by compare-and-swap.
When Elasticsearch is down nothing advances and capture goes on; the lag is
``log size - cursor`` and returns to zero once the index is back. A replay of a range
(crash between upsert and cursor write) rebuilds the same documents: every fold is
idempotent and parked folds are kept.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from archiver.indexing.documents import (
    EVENT_KINDS,
    MESSAGE_KINDS,
    Fold,
    apply_fold,
    event_document,
    folds_for,
    history_media_fold,
    message_document,
)
from archiver.indexing.logged import logged_record
from archiver.indexing.recent import RecentObjects
from archiver.ingest.ports import KeySource
from archiver.keys.errors import KeysError
from archiver.keys.store import KeySession
from archiver.keyspace import (
    INDEX_ACTIVE_KEY,
    INDEX_CONSENT,
    INDEX_NAMES,
    KEYS_EPOCH_KEY,
    MERGED_PREFIX,
    RECORDS_PREFIX,
    index_cursor_key,
    index_fold_key,
    index_subject_key,
)
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.ports import LogReader
from archiver.logs import get_logger
from archiver.metering import RECORDS, stage
from archiver.records.model import Record, RecordError
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import PreconditionFailed
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.identity import Identities
from search.port import SearchIndex, SearchRequest

log = get_logger("archiver.indexer")

DEFAULT_GENERATION = "live"
# A range is read again when a key was destroyed while it was being indexed; past this
# many tries in a row the batch fails (the loop backs off and retries it).
_EPOCH_TRIES = 5
_ABSENT_MAX = 100_000  # subjects kept per kind of absence
# Listings of per-subject state and parked folds are kept (like the absences) up to this
# many keys each. A per-subject prefix is listed only up to _LIST_MAX keys (a few pages):
# past it the kind is read per subject, as a listing would cost more than it saves.
_LISTED_MAX = 100_000
_LIST_MAX = 5_000


def active_generation(state: StateStore) -> str:
    value = state.get(INDEX_ACTIVE_KEY)
    return value.value.decode() if value else DEFAULT_GENERATION


def indexed_size(state: StateStore) -> int:
    """The active generation's cursor: every leaf below it is upserted in the live index
    (searchable after a refresh, which the loop may not have asked for yet)."""
    value = state.get(index_cursor_key(active_generation(state)))
    return int(value.value) if value else 0


def set_active_generation(state: StateStore, generation: str) -> None:
    current = state.get(INDEX_ACTIVE_KEY)
    if current is None:
        state.put(INDEX_ACTIVE_KEY, generation.encode(), if_absent=True)
    else:
        state.put(INDEX_ACTIVE_KEY, generation.encode(), if_match=current.token)


class GenerationRetired(PreconditionFailed):
    """A rebuild became active while this follower was mid-batch; the batch is dropped."""

    code = "index_generation_retired"


class IndexFollower:
    """Follows the log into ``index``. ``generation=None`` follows the active generation
    (the app's follower); a rebuild passes its own name and a fresh target index."""

    def __init__(
        self,
        *,
        log_reader: LogReader,
        objects: ObjectStore,
        state: StateStore,
        keys: KeySource,
        index: SearchIndex,
        pseudo: Pseudonymizer,
        generation: str | None = None,
        on_indexed: Callable[[int], None] | None = None,
        after_upsert: Callable[[list[str]], object] | None = None,
        recent: RecentObjects | None = None,
    ) -> None:
        self.log = log_reader
        self.objects = objects
        self.state = state
        self.keys = keys
        self.index = index
        self.pseudo = pseudo
        self._fixed_generation = generation
        self.on_indexed = on_indexed
        # Called with the ids of each upserted batch (the live index only): the runtime
        # hangs query-scoped legal holds on it, so later arrivals are held as they come.
        self.after_upsert = after_upsert if generation is None else None
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="index-read")
        # Records this process's processor just wrote (the runtime passes both the one cache).
        self._recent = recent
        self._identities = Identities(state)  # write-once links, cached across batches
        # Writes without waiting for a refresh where the index can (``ElasticIndex.deferred``):
        # ``catch_up`` makes them searchable itself when its caller asks (``visible``).
        deferred: Any = getattr(index, "deferred", None)
        self._writer: SearchIndex = deferred() if callable(deferred) else index
        # Per-subject state found absent (``_Absent``), carried from one batch to the next.
        self._absent = _Absent()
        # The active generation as the last busy batch checked it (``_start_generation``).
        self._seen_generation: str | None = None

    @property
    def generation(self) -> str:
        return self._fixed_generation or active_generation(self.state)

    def _cursor_key(self, generation: str) -> str:
        return index_cursor_key(generation)

    def cursor(self, generation: str | None = None) -> int:
        return self._cursor(generation or self.generation)[0]

    def _cursor(self, generation: str) -> tuple[int, str | None]:
        """The cursor and its token (None: not written yet)."""
        value = self.state.get(self._cursor_key(generation))
        return (int(value.value), value.token) if value else (0, None)

    def lag(self) -> int:
        return max(0, self.log.size() - self.cursor())

    def _set_cursor(self, generation: str, token: str | None, new: int) -> None:
        """Compare-and-swap from the cursor read at the batch's start (``token``): a
        cursor another follower moved meanwhile refuses (PreconditionFailed)."""
        key = self._cursor_key(generation)
        if token is None:
            self.state.put(key, str(new).encode(), if_absent=True)
        else:
            self.state.put(key, str(new).encode(), if_match=token)

    def _read(self, item: tuple[int, str, str, str | None]) -> Record | None:
        """The record of a leaf, checked against the entry's SHA-256 (``logged_record``):
        None when disposed since, and, loudly, when its stored bytes are not the logged
        ones (an altered record is never indexed; ``archiver verify`` reports it)."""
        _leaf, key, version, digest = item
        body = self._recent.take(key, version, digest) if self._recent else None
        return logged_record(self.objects, key, version, digest, body=body, reader="index")

    def _epoch(self) -> bytes:
        """``keys/epoch``: every destruction of key material raises it first."""
        got = self.state.get(KEYS_EPOCH_KEY)
        return got.value if got is not None else b"0"

    def _start_generation(self) -> str:
        """The generation a batch starts in: the one the previous busy batch checked after
        its read (a rebuild activated since is caught by this batch's own check, before it
        writes anything), read afresh after an idle poll."""
        if self._fixed_generation is not None:
            return self._fixed_generation
        if self._seen_generation is None:
            self._seen_generation = active_generation(self.state)
        return self._seen_generation

    def _session(self) -> tuple[Any, bytes]:
        """A key session and the ``keys/epoch`` it opened at (one read for both)."""
        session = self.keys.session()
        if isinstance(session, KeySession):
            return session, session.epoch
        return session, self._epoch()

    def catch_up(self, max_entries: int = 2000, *, visible: bool = True) -> int:
        """Index up to ``max_entries`` leaves; return how many leaves were consumed.

        ``visible``: the documents are searchable when this returns (one refresh). The
        indexing loop passes False: a batch that does not reach the log's end becomes
        searchable at the index's next scheduled refresh (about a second) instead of each
        bulk waiting for one; the batch that catches up is refreshed before its cursor is
        written, so a lag of 0 (``/readyz``) still means every leaf is searchable."""
        generation = self._start_generation()
        start, token = self._cursor(generation)
        size = self.log.size()
        if start >= size:
            self._seen_generation = None  # idle: the next poll reads the active one again
            return 0
        end = min(size, start + max_entries)
        written: set[str] = set()  # ids every attempt upserted
        for attempt in range(_EPOCH_TRIES):
            session, epoch = self._session()
            self._absent.check(generation, start, epoch)
            with stage("index_read"):
                batch = self._read_range(generation, start, end, session)
            if self._fixed_generation is None:
                self._seen_generation = active_generation(self.state)
                if self._seen_generation != generation:
                    raise GenerationRetired(
                        f"generation {generation} was replaced during the batch"
                    )
            if batch.docs:
                with stage("index_upsert"):
                    self._writer.upsert(batch.docs.values())
            if batch.merged:  # history media now shown on their placeholder
                self._writer.delete_ids(sorted(batch.merged))
            if batch.gone:  # documents of records disposed since they were read
                self._writer.delete_ids(batch.gone)
            written |= set(batch.docs)
            # Crypto-shredding: the batch decrypted with keys as they were when it started
            # (the process's key cache, ``KeyStore.session``). If a key was destroyed since,
            # an erasure may have purged the index before our upsert put the text back:
            # index the range again, with a fresh session, which cannot open it any more.
            if self._epoch() == epoch:
                break
            log.info("index_range_reread_after_shred", start=start, end=end, attempt=attempt)
        else:
            raise PreconditionFailed("keys destroyed during every try of an index batch")
        if written - set(batch.docs):
            self._drop_unreadable(sorted(written - set(batch.docs)))
        if visible or end >= size:
            self._refresh()
        if batch.docs and self.after_upsert is not None:
            with stage("index_holds"):
                self.after_upsert(list(batch.docs))
        with stage("index_cursor"):
            self._set_cursor(generation, token, end)
        self._absent.keep(batch.absent, batch.listed, batch.too_many, generation, end, epoch)
        RECORDS.labels(step="indexed").inc(end - start)
        if self.on_indexed is not None:
            self.on_indexed(end - start)
        return end - start

    def _drop_unreadable(self, ids: list[str]) -> None:
        """Documents an attempt overtaken by a shred wrote and the re-read did not: a fold
        target read from the index before the erasure purged it and written back with its
        text. Those whose own record's key is destroyed now go, as the erasure's purge
        meant; the others (a record still readable) stay as written."""
        session = self.keys.session()
        doomed = []
        for doc_id in ids:
            doc = self.index.get(doc_id)
            leaf = doc.get("leaf_index") if doc else None
            if not isinstance(leaf, int) or leaf >= self.log.size():
                continue
            entry = parse_entry(self.log.entries(leaf, leaf + 1)[0])
            if entry.kind is not EntryKind.RECORD or entry.key is None or entry.version_id is None:
                continue
            digest = entry.fields.get("sha256")
            record = self._read(
                (leaf, entry.key, entry.version_id, digest if isinstance(digest, str) else None)
            )
            if record is None or not isinstance(record.header.get("sealed"), dict):
                continue  # disposed, or nothing sealed (no text of it in the document)
            try:
                session.get(record.key_id)
            except KeysError:
                doomed.append(doc_id)  # crypto-shredded
        if doomed:
            log.info("index_dropped_shredded_after_reread", documents=len(doomed))
            self._writer.delete_ids(doomed)

    def _refresh(self) -> None:
        refresh: Any = getattr(self.index, "refresh", None)
        if callable(refresh):
            refresh()

    def _read_range(self, generation: str, start: int, end: int, session: Any) -> _Batch:
        """The documents and folds of leaves ``start`` to ``end``."""
        batch = _Batch(self, generation, session)
        wanted: list[tuple[int, str, str, str | None]] = []
        entries = [parse_entry(data) for data in self.log.entries(start, end)]
        # Record versions this range says were disposed. A record the processor wrote a
        # moment ago may still be in the recent cache when disposition deletes it, and a
        # read may race the delete: the log's ``disposed`` leaf is what settles it.
        disposed = {
            (e.key, e.version_id)
            for e in entries
            if e.kind is EntryKind.DISPOSED and e.key and e.version_id
            and e.key.startswith(RECORDS_PREFIX)
        }  # fmt: skip
        for offset, entry in enumerate(entries):
            if entry.kind is EntryKind.SUBJECT_MERGED:
                batch.subject_merged(entry.fields.get("conversation"))
                continue
            if entry.kind is not EntryKind.RECORD:
                continue
            key, version = entry.key, entry.version_id
            assert key is not None and version is not None
            if (key, version) in disposed:
                continue  # gone by the end of this range: as a read of the store finds it
            sha256 = entry.fields.get("sha256")
            digest = sha256 if isinstance(sha256, str) else None
            wanted.append((start + offset, key, version, digest))
        # Reading records is one round trip each: fetch them side by side, then fold them
        # in log order (folding is order-sensitive, reading is not).
        read = list(zip((w[0] for w in wanted), self._pool.map(self._read, wanted), strict=True))
        # None: disposed since; its tombstone comes later.
        records = [(leaf, record) for leaf, record in read if record is not None]
        batch.prefetch([record for _leaf, record in records])
        for leaf, record in records:
            batch.add(record, leaf)
        batch.finish()
        if disposed:
            batch.gone = self._disposed_documents(batch, disposed)
        return batch

    def _disposed_documents(self, batch: _Batch, disposed: set[tuple[str, str]]) -> list[str]:
        """The documents of disposed record versions (disposition deletes each itself,
        but a follower that read the record from the cache, or before the delete, may have
        written it back since): dropped from the batch, to be deleted after its upsert. A
        document of a newer version of the same record (a delivery again after the
        disposal) stays."""
        versions: dict[str, set[str]] = {}
        for key, version in disposed:
            versions.setdefault(key.rsplit("/", 1)[-1], set()).add(version)
        # Usually none is indexed (disposition deleted it): look side by side, as folds do.
        missing = sorted(doc_id for doc_id in versions if doc_id not in batch.docs)
        indexed = dict(zip(missing, self._pool.map(self.index.get, missing), strict=True))
        gone = []
        for doc_id, dead in sorted(versions.items()):
            doc = batch.docs.get(doc_id) or indexed.get(doc_id)
            if doc is None:
                continue  # the usual case: disposition deleted it and nothing wrote it back
            leaf = doc.get("leaf_index")
            if isinstance(leaf, int) and leaf < self.log.size():
                entry = parse_entry(self.log.entries(leaf, leaf + 1)[0])
                if entry.kind is EntryKind.RECORD and entry.version_id not in dead:
                    continue
            batch.docs.pop(doc_id, None)
            gone.append(doc_id)
        return gone

    def run_to_end(self, max_entries: int = 2000) -> int:
        """Catch up until the log's current end (a rebuild, a test); return leaves consumed."""
        total = 0
        while consumed := self.catch_up(max_entries):
            total += consumed
        return total


class _Absent:
    """Per-subject state the follower found absent, kept from one batch to the next
    (most subjects have no merge pointer, consent state or contact-sync name, and
    reading that again for every subject of every batch was most of a batch's round
    trips). Only absences are kept: what exists is read again each batch.

    ``listed``: for each kind (and ``folds``, the parked fold keys), the complete set of
    what exists, from one listing of its prefix (None: not listed, or too many to keep):
    a subject not in it is absent without a read, the first time it is met too. A batch
    lists what is not kept, and keeps the sets up to date with its own writes. A
    per-subject kind with more than ``_LIST_MAX`` keys is read per subject instead
    (``too_many``, kept too: not listed again while the follower runs on).

    Valid only while nothing else can have written them: the next batch starts where this
    follower's last one ended (no other follower indexed in between; the follower's own
    batches write consent, names and folds, and forget an absence they fill), in the same
    generation, with ``keys/epoch`` unchanged (an erasure raises it before it purges a
    subject's state). A merge pointer is written before its ``subject_merged`` leaf: a
    range with such a leaf drops the kept pointer absences and listing, and re-indexes the
    merged subject's documents (``_Batch._reindex_merged``)."""

    KINDS = ("merged", INDEX_CONSENT, INDEX_NAMES)
    LISTED = (*KINDS, "folds")

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {k: set() for k in self.KINDS}
        self.listed: dict[str, set[str] | None] = dict.fromkeys(self.LISTED)
        self.too_many: set[str] = set()  # kinds past ``_LIST_MAX``: not listed again
        self._at: tuple[str, int, bytes] | None = None

    def check(self, generation: str, start: int, epoch: bytes) -> None:
        if self._at != (generation, start, epoch):
            self.sets = {k: set() for k in self.KINDS}
            self.listed = dict.fromkeys(self.LISTED)
            self.too_many = set()

    def keep(
        self,
        found: dict[str, set[str]],
        listed: dict[str, set[str] | None],
        too_many: set[str],
        generation: str,
        end: int,
        epoch: bytes,
    ) -> None:
        # Bounded (a few MB): past the limit a kind starts over, read again as needed.
        self.sets = {
            k: set(v) if len(v := found.get(k, set())) <= _ABSENT_MAX else set() for k in self.KINDS
        }
        self.listed = {
            k: got if (got := listed.get(k)) is not None and len(got) <= _LISTED_MAX else None
            for k in self.LISTED
        }
        self.too_many = set(too_many)
        self._at = (generation, end, epoch)


def _listing(state: StateStore, prefix: str, limit: int | None) -> set[str] | None:
    """The last path part of every key under ``prefix``; None past ``limit`` keys."""
    out: set[str] = set()
    for key in state.list(prefix):
        out.add(key[len(prefix) :])
        if limit is not None and len(out) > limit:
            return None
    return out


def _business_of(business: Any) -> str:
    """The business part of a pseudonym, as the processor names it."""
    if business.get("phone_number_id"):
        return str(business["phone_number_id"])
    return f"waba:{business['waba_id']}" if business.get("waba_id") else "unknown"


class _Batch:
    """Documents and folds of one range of the log, with the per-subject state it needs."""

    def __init__(self, follower: IndexFollower, generation: str, session: Any) -> None:
        self.f = follower
        self.gen = generation
        self._session = session  # key material cached until a shred
        self._keys: dict[str, bytes] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.folds: list[Fold] = []
        self._consent: dict[str, str | None] = {}
        self._names: dict[str, str | None] = {}
        self._renamed: dict[str, str | None] = {}  # conversation -> contact-sync name
        self.merged: set[str] = set()  # history media documents folded into another
        self.gone: list[str] = []  # documents of disposed records (``_disposed_documents``)
        self._parked: set[str] = set()  # targets with folds parked when ``finish`` began
        # Documents are indexed under the person's canonical subject and conversation,
        # read now: a merge logged later re-indexes what was indexed before it.
        kept = follower._absent.sets
        # What exists of each kind, listed once while the follower runs on (``_Absent``).
        self.listed: dict[str, set[str] | None] = {
            k: set(v) if v is not None else None for k, v in follower._absent.listed.items()
        }
        self.too_many = set(follower._absent.too_many)
        for kind, prefix in (
            ("merged", MERGED_PREFIX),
            (INDEX_CONSENT, index_subject_key(INDEX_CONSENT, generation, "")),
            (INDEX_NAMES, index_subject_key(INDEX_NAMES, generation, "")),
        ):
            if self.listed[kind] is None and kind not in self.too_many:
                self.listed[kind] = _listing(follower.state, prefix, _LIST_MAX)
                if self.listed[kind] is None:
                    self.too_many.add(kind)
        if self.listed["folds"] is None:  # every parked fold, as each batch once listed
            self.listed["folds"] = _listing(follower.state, index_fold_key(generation, ""), None)
        self.ids = follower._identities.fresh(roots=kept["merged"], pointers=self.listed["merged"])
        # Absences found or kept by this batch, for the next (``_Absent``).
        self.absent: dict[str, set[str]] = {k: set(v) for k, v in kept.items()}
        self._merged_people: list[str] = []  # conversations of subjects merged into another
        self._lock = threading.Lock()

    # ---- per-subject state -------------------------------------------------------------

    def _remembered(self, kind: str, cache: dict[str, str | None], subject: str) -> str | None:
        if subject not in cache:
            listed = self.listed[kind]
            if subject in self.absent[kind] or (listed is not None and subject not in listed):
                cache[subject] = None  # absent when an earlier batch read or listed it
                return None
            value = self.f.state.get(index_subject_key(kind, self.gen, subject))
            cache[subject] = value.value.decode() if value else None
            if value is None:
                self.absent[kind].add(subject)
        return cache[subject]

    def _remember(self, kind: str, cache: dict[str, str | None], subject: str, value: str) -> None:
        cache[subject] = value
        self.absent[kind].discard(subject)
        if (listed := self.listed[kind]) is not None:
            listed.add(subject)
        key = index_subject_key(kind, self.gen, subject)
        current = self.f.state.get(key)
        if current is None:
            try:
                self.f.state.put(key, value.encode(), if_absent=True)
            except PreconditionFailed:
                current = self.f.state.get(key)
        if current is not None and current.value != value.encode():
            self.f.state.put(key, value.encode(), if_match=current.token)

    def _forget(self, kind: str, cache: dict[str, str | None], subject: str) -> None:
        cache[subject] = None
        self.f.state.delete(index_subject_key(kind, self.gen, subject))
        self.absent[kind].add(subject)
        if (listed := self.listed[kind]) is not None:
            listed.discard(subject)

    def _key(self, key_id: str) -> bytes:
        """A data key, looked up once per batch (a batch is a few seconds of the log)."""
        if key_id not in self._keys:
            self._keys[key_id] = self._session.get(key_id).secret
        return self._keys[key_id]

    def prefetch(self, records: list[Record]) -> None:
        """The per-subject state ``add`` will need (merge pointers, consent, names, data
        keys), read side by side instead of one round trip after another in log order.
        Only reads: ``add`` then finds the answers in this batch's caches."""
        pool = self.f._pool
        subjects = sorted({s for r in records if isinstance(s := r.header.get("subject"), str)})
        roots = sorted(set(pool.map(self.ids.find, subjects)))
        for kind, cache in (("consent", self._consent), ("names", self._names)):
            list(pool.map(lambda s, k=kind, c=cache: self._remembered(k, c, s), roots))

        def key(key_id: str) -> None:
            # Crypto-shredded: ``add`` finds out again and indexes no content.
            with contextlib.suppress(KeysError):
                self._key(key_id)

        list(pool.map(key, sorted({r.key_id for r in records})))

    # ---- records -----------------------------------------------------------------------

    def _canonical(self, header: dict[str, Any]) -> dict[str, Any]:
        """``header`` with the person's canonical subject and, for a one-to-one
        conversation, the canonical subject's conversation (``archiver.subjects``)."""
        subject = header.get("subject")
        if not isinstance(subject, str):
            return header
        root = self.ids.find(subject)
        if root == subject:
            return header
        out = {**header, "subject": root}
        business = _business_of(header.get("business") or {})
        if header.get("conversation") == self.f.pseudo.conversation(business, subject):
            out["conversation"] = self.f.pseudo.conversation(business, root)
        return out

    def subject_merged(self, conversation: Any) -> None:
        """A ``subject_merged`` leaf: the merged subject's documents move to its person."""
        # Its pointer may have been read as absent by an earlier batch: read them again.
        self.absent["merged"].clear()
        self.listed["merged"] = None
        self.ids = self.f._identities.fresh()
        if isinstance(conversation, str) and conversation not in self._merged_people:
            self._merged_people.append(conversation)

    def _reindex_merged(self) -> None:
        """Documents indexed under a subject merged since: canonical subject and
        conversation, so thread, consent and search see one person. Idempotent."""
        refresh: Any = getattr(self.f.index, "refresh", None)
        if callable(refresh):
            refresh()  # documents of earlier batches must be searchable
        for conversation in self._merged_people:
            request = SearchRequest(filters={"conversation": [conversation]}, size=500)
            while True:
                result = self.f.index.search(request)
                for hit in result.hits:
                    doc = self.docs.get(hit.id) or dict(hit.doc)
                    self.docs[hit.id] = self._canonical_doc(doc)
                if result.next_cursor is None:
                    break
                request = SearchRequest(
                    filters=request.filters, size=request.size, cursor=result.next_cursor
                )

    def _canonical_doc(self, doc: dict[str, Any]) -> dict[str, Any]:
        subject = doc.get("subject")
        if not isinstance(subject, str):
            return doc
        business = doc.get("phone_number_id")
        header = {"subject": subject, "conversation": doc.get("conversation"),
                  "business": {"phone_number_id": business}}  # fmt: skip
        fixed = self._canonical(header)
        return {**doc, "subject": fixed["subject"], "conversation": fixed["conversation"]}

    def add(self, record: Record, leaf_index: int) -> None:
        header = self._canonical(dict(record.header))
        try:
            event = record.open(self._key(record.key_id)).get("event")
        except (KeysError, RecordError):
            event = None  # crypto-shredded: index only what is not personal
        subject = header.get("subject")
        kind = header["kind"]
        if kind == "consent" and subject and (header.get("consent") or {}).get("state"):
            self._remember(INDEX_CONSENT, self._consent, subject, str(header["consent"]["state"]))
        if kind == "contact_sync" and subject and event:
            self._contact_sync(header, event, subject)
        if kind in MESSAGE_KINDS or kind in EVENT_KINDS:
            build = message_document if kind in MESSAGE_KINDS else event_document
            self.docs[record.record_id] = build(
                header,
                event,
                leaf_index,
                consent=(
                    self._remembered(INDEX_CONSENT, self._consent, subject) if subject else None
                ),
                known_name=(
                    self._remembered(INDEX_NAMES, self._names, subject) if subject else None
                ),
            )
        business = (header.get("business") or {}).get("phone_number_id") or "unknown"

        def target_of(wamid: str) -> str:
            return self.f.pseudo.record_id(business, "msg:" + wamid)

        self.folds.extend(folds_for(header, event, target_of))
        media = history_media_fold(header, event, target_of)
        if media is not None:
            self.folds.append(media)

    def _contact_sync(self, header: Any, event: Any, subject: str) -> None:
        """The business names (``add``/``edit``) or forgets (``remove``) a contact."""
        conversation = header.get("conversation")
        if str(event.get("action") or "").lower() == "remove":
            self._forget(INDEX_NAMES, self._names, subject)
            if conversation:
                self._renamed[str(conversation)] = None
        elif event.get("full_name"):
            name = str(event["full_name"])
            self._remember(INDEX_NAMES, self._names, subject, name)
            if conversation:
                self._renamed[str(conversation)] = name

    def finish(self) -> None:
        self.absent["merged"] = set(self.ids.roots) if not self._merged_people else set()
        if self._merged_people:
            self._reindex_merged()
        # Folds waiting for documents that arrive in this batch: one listing of what is
        # parked instead of one look-up per document.
        self._parked = set(self.listed["folds"] or ())  # listed when the batch began
        for doc_id in list(self.docs):
            if doc_id not in self._parked:
                continue
            waiting = self.f.state.get(self._fold_key(doc_id))
            if waiting is not None:
                for item in json.loads(waiting.value):
                    self.docs[doc_id] = self._apply(
                        self.docs[doc_id], Fold(doc_id, item["op"], item["data"])
                    )
        # Targets indexed earlier: fetch them side by side.
        missing = sorted({f.target for f in self.folds if f.target not in self.docs})
        earlier = dict(zip(missing, self.f._pool.map(self.f.index.get, missing), strict=True))
        to_park: dict[str, list[Fold]] = {}
        for fold in self.folds:
            doc = self.docs.get(fold.target) or earlier.get(fold.target)
            if doc is not None:
                self.docs[fold.target] = self._apply(doc, fold)
            else:
                to_park.setdefault(fold.target, []).append(fold)
        for merged in self.merged:
            self.docs.pop(merged, None)
        # Each target's folds in order; different targets side by side.
        list(self.f._pool.map(self._park_all, to_park.values()))
        for conversation, name in self._renamed.items():
            self._rename(conversation, name)

    def _apply(self, doc: dict[str, Any], fold: Fold) -> dict[str, Any]:
        if fold.op == "history_media" and fold.data.get("record_id") != fold.target:
            # The media is shown on its placeholder now: its own document (made by this
            # batch, or by an earlier one while the placeholder was missing) goes.
            self.merged.add(str(fold.data["record_id"]))
        return apply_fold(doc, fold)

    def _park_all(self, folds: list[Fold]) -> None:
        target = folds[0].target
        key = self._fold_key(target)
        if (listed := self.listed["folds"]) is not None:
            with self._lock:  # targets are parked side by side
                listed.add(target)
        if target not in self._parked:
            # Nothing was parked for the target when this batch listed the folds: create
            # the list in one round trip; a concurrent creator makes us fall back below.
            items: list[dict[str, Any]] = []
            for fold in folds:
                item = {"op": fold.op, "data": dict(fold.data)}
                if item not in items:
                    items.append(item)
            try:
                self.f.state.put(key, json.dumps(items).encode(), if_absent=True)
                return
            except PreconditionFailed:
                pass
        for fold in folds:
            self._park(fold)

    def _rename(self, conversation: str, name: str | None) -> None:
        """A contact sync names the contact (or, ``None``, forgets the name): earlier
        documents of the conversation learn it. A contact-sync event keeps its own name."""
        refresh: Any = getattr(self.f.index, "refresh", None)
        if callable(refresh):
            refresh()  # a rebuild writes without refresh; search must see earlier batches
        request = SearchRequest(filters={"conversation": [conversation]}, size=500)
        while True:
            result = self.f.index.search(request)
            for hit in result.hits:
                doc = self.docs.get(hit.id) or dict(hit.doc)
                if doc.get("kind") != "contact_sync":
                    self.docs[hit.id] = apply_fold(
                        doc, Fold(hit.id, "contact_name", {"name": name})
                    )
            if result.next_cursor is None:
                break
            request = SearchRequest(
                filters=request.filters, size=request.size, cursor=result.next_cursor
            )
        for doc_id, doc in self.docs.items():
            if doc.get("conversation") == conversation and doc.get("kind") != "contact_sync":
                self.docs[doc_id] = apply_fold(doc, Fold(doc_id, "contact_name", {"name": name}))

    def _fold_key(self, target: str) -> str:
        return index_fold_key(self.gen, target)

    def _park(self, fold: Fold) -> None:
        key = self._fold_key(fold.target)
        for _ in range(10):
            current = self.f.state.get(key)
            items = json.loads(current.value) if current else []
            item = {"op": fold.op, "data": dict(fold.data)}
            if item in items:
                return
            items.append(item)
            try:
                if current is None:
                    self.f.state.put(key, json.dumps(items).encode(), if_absent=True)
                else:
                    self.f.state.put(key, json.dumps(items).encode(), if_match=current.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"could not park a fold for {fold.target}")
