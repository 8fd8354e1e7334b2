"""Which records a case's scope covers, streamed from the index (both adapters).

``records_in_scope`` yields record ids, each once:

1. every document the scope's query finds (``model.scope_query``: query, dates, custodian
   contacts) within the case's numbers, page by page through the index's cursor
   (Elasticsearch: point in time + ``search_after``; SQLite: keyset), so no result
   window caps it. Every record kind is a document of its own
   (``archiver.indexing.documents``): messages, echoes, history messages and history
   media, API sends, edits, revokes, reactions, statuses and every other event;
2. the **family** of every message found: the records about it (its edits, revokes,
   reactions and statuses, and the history media delivery of a history placeholder) and,
   for an edit, revoke or reaction found, the message it is about and that message's
   family, even when they fall outside the date range or do not match the query
   themselves: an export shows a message with its history (RSMF puts edits, reactions and
   read receipts on the message event). A family shares a conversation and a message
   ref (``message_ref`` of the message and its statuses and history media,
   ``target_ref`` of edits, revokes and reactions), so it is found by streaming each
   conversation of the hits once.

Memory stays flat: the ids already yielded and the message refs found are kept in a
temporary SQLite file (:class:`SpooledSet`), not in Python sets (~150 bytes an id: 15 MB
at 100,000 records, and the walk runs for the whole export). The file names record ids
and message refs, so it is made in the caller's folder: the runtime hands the job spool's
process folder (``ARCHIVER_SPOOL_DIR``'s ``wa-archiver-spool``, owner-only, swept after a
crash: ``archiver.jobs.spool``), never the system temp folder unless no folder is given.

Attachments (media link records and blobs) are not index documents: an export reads
them with ``CaseService.attachments`` (the holds' attachment view). A record not yet
indexed is not found: run after the follower caught up (``/readyz`` shows its lag).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from archiver.cases.model import Custodians, Scope, scope_query
from archiver.indexing.documents import MESSAGE_KINDS
from search.port import SearchIndex, SearchRequest

PAGE = 1000  # the adapters' largest page (search._common.MAX_SIZE)


class SpooledSet:
    """A set of strings in a temporary SQLite file (deleted on close): what the scope
    walk remembers grows with the scope, so it lives on disk, with a bounded page cache.
    Also holds the (conversation, message ref) pairs of the family step."""

    def __init__(self, directory: str | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="wa-scope-", suffix=".db", dir=directory)
        os.close(fd)
        self._path = Path(name)
        self._db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-4096"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE s (k TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("CREATE TABLE u (conv TEXT, unit TEXT, PRIMARY KEY (conv, unit)) "
                         "WITHOUT ROWID")  # fmt: skip
        self._db.execute("BEGIN")  # never committed: a scratch file, dropped on close

    def add(self, key: str) -> bool:
        """Add ``key``; True when it was not there yet."""
        return self._db.execute("INSERT OR IGNORE INTO s VALUES (?)", (key,)).rowcount == 1

    def __contains__(self, key: object) -> bool:
        return self._db.execute("SELECT 1 FROM s WHERE k = ?", (key,)).fetchone() is not None

    def add_unit(self, conversation: str, unit: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO u VALUES (?, ?)", (conversation, unit))

    def has_unit(self, conversation: str, unit: str) -> bool:
        return self._db.execute("SELECT 1 FROM u WHERE conv = ? AND unit = ?",
                                (conversation, unit)).fetchone() is not None  # fmt: skip

    def unit_conversations(self) -> Iterator[str]:
        """The conversations of the units, in order (read a page at a time)."""
        last = ""
        while True:
            rows = self._db.execute("SELECT DISTINCT conv FROM u WHERE conv > ? ORDER BY conv "
                                    "LIMIT 256", (last,)).fetchall()  # fmt: skip
            if not rows:
                return
            for (conv,) in rows:
                yield conv
            last = rows[-1][0]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def __enter__(self) -> SpooledSet:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _pages(index: SearchIndex, request: SearchRequest) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        page = index.search(SearchRequest(
            q=request.q, filters=request.filters, date_from=request.date_from,
            date_to=request.date_to, scope_numbers=request.scope_numbers, sort="time_asc",
            size=PAGE, cursor=cursor,
        ))  # fmt: skip
        for hit in page.hits:
            yield {**hit.doc, "id": hit.id}
        cursor = page.next_cursor
        if not cursor or not page.hits:
            return


def _unit(doc: Mapping[str, Any]) -> str | None:
    """The message a document belongs to: an edit/revoke/reaction's target, else its own
    message ref (a message, its statuses, a history media delivery)."""
    ref = doc.get("target_ref") or doc.get("message_ref")
    return str(ref) if ref else None


def scope_request(case: Mapping[str, Any]) -> SearchRequest:
    scope = Scope.from_json(case["scope"])
    custodians = Custodians.from_json(case.get("custodians") or {})
    numbers = None if scope.numbers is None else list(scope.numbers)
    return SearchRequest(q=scope_query(custodians, scope), scope_numbers=numbers)


def records_in_scope(index: SearchIndex, case: Mapping[str, Any],
                     seen: SpooledSet | None = None) -> Iterator[str]:  # fmt: skip
    """Record ids of the case's scope and their families, each once (see the module).
    ``seen``: the caller's set of ids already yielded (it may add its own)."""
    for record_id, _ in scope_documents(index, case, seen):
        yield record_id


def scope_documents(index: SearchIndex, case: Mapping[str, Any], seen: SpooledSet | None = None
                    ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
    """As ``records_in_scope``, each id with the index document the walk read it from
    (None for an id only named in another document's ``sources``): an export needs no
    second read of the index per record."""
    for record_id, doc, _ in _walk_seen(index, case, seen):
        yield record_id, doc


def walk_scope(index: SearchIndex, case: Mapping[str, Any], seen: SpooledSet | None = None,
               *, directory: str | None = None) -> Iterator[tuple[str, bool]]:  # fmt: skip
    """``(record id, is_family)``: the scope's own hits first, then their families.
    ``directory``: where the walk's own set is made (when ``seen`` is None)."""
    for record_id, _, is_family in _walk_seen(index, case, seen, directory):
        yield record_id, is_family


def _walk_seen(index: SearchIndex, case: Mapping[str, Any], seen: SpooledSet | None,
               directory: str | None = None
               ) -> Iterator[tuple[str, dict[str, Any] | None, bool]]:  # fmt: skip
    """``seen`` (else a set of its own in ``directory``, closed at the end) receives every
    id yielded."""
    with contextlib.ExitStack() as stack:
        if seen is None:
            seen = stack.enter_context(SpooledSet(directory))
        yield from _walk(index, case, seen)


def _own(doc: dict[str, Any], seen: SpooledSet
         ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
    """The document's record and the records folded into it, those not yielded yet."""
    if seen.add(doc["id"]):
        yield doc["id"], doc
    for rid in doc.get("sources") or ():
        if seen.add(rid):
            yield rid, None


def _walk(index: SearchIndex, case: Mapping[str, Any],
          seen: SpooledSet) -> Iterator[tuple[str, dict[str, Any] | None, bool]]:  # fmt: skip
    request = scope_request(case)
    for doc in _pages(index, request):
        for rid, own in _own(doc, seen):
            yield rid, own, False
        unit, conversation = _unit(doc), doc.get("conversation")
        if unit and conversation and (doc.get("kind") in MESSAGE_KINDS
                                      or doc.get("target_ref") or doc.get("kind") == "status"):
            seen.add_unit(str(conversation), unit)
    for conversation in seen.unit_conversations():
        family = SearchRequest(filters={"conversation": [conversation]},
                               scope_numbers=request.scope_numbers)  # fmt: skip
        for doc in _pages(index, family):
            unit = _unit(doc)
            if unit is not None and seen.has_unit(conversation, unit):
                for rid, own in _own(doc, seen):
                    yield rid, own, True
