"""Retention findings of ``archiver verify``, beside the log-and-object checks of
:func:`archiver.ledger.verify.verify_archive`:

* ``index:disposed_present``: the index still has the document of a record whose version
  a ``disposed`` leaf names and of which no version is stored any more (a disposition
  that crashed between the store delete and the index delete, before the journal).
* ``media:message_held_attachment_not``: a message version is under a legal hold, but
  the link record or the blob of one of its attachments (the logged ``media_link``
  records) is not. An attachment follows its message, so a hold must cover both.

One pass over the log (the ``disposed`` and ``media_link`` leaves), one index look-up per
disposed record, one GET per link and a ``stat`` per message, link and blob. Store and
index errors become nothing here: the object checks already report an unreadable store.
"""

from __future__ import annotations

from typing import Protocol

from archiver.keyspace import RECORDS_PREFIX
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.ports import LogReader
from archiver.ledger.verify_objects import Finding, FindingKind
from archiver.records.model import Record
from archiver.retention.attachments import attachment_of_header, message_versions
from archiver.retention.common import live_versions
from archiver.store.errors import ObjectNotFound, StoreError
from archiver.store.port import ObjectStore
from search.errors import SearchError

_CHUNK = 4096
_WANTED = (b'"kind":"disposed"', b'"event":"media_link"')


class IndexReader(Protocol):
    def get(self, doc_id: str) -> dict[str, object] | None: ...


def retention_findings(
    log: LogReader, objects: ObjectStore, index: IndexReader | None
) -> list[Finding]:
    disposed: set[str] = set()
    links: list[tuple[str, str]] = []
    size = log.size()
    for start in range(0, size, _CHUNK):
        for data in log.entries(start, min(start + _CHUNK, size)):
            if not any(w in data for w in _WANTED):
                continue
            entry = parse_entry(data)
            if entry.key is None or entry.version_id is None:
                continue
            if entry.kind is EntryKind.DISPOSED and entry.key.startswith(RECORDS_PREFIX):
                disposed.add(entry.key)
            elif entry.kind is EntryKind.RECORD and entry.fields.get("event") == "media_link":
                links.append((entry.key, entry.version_id))
    findings = _index_findings(sorted(disposed), objects, index) if index is not None else []
    return findings + _attachment_findings(links, objects)


def _index_findings(
    keys: list[str], objects: ObjectStore, index: IndexReader
) -> list[Finding]:
    out = []
    for key in keys:
        record_id = key.rsplit("/", 1)[-1]
        try:
            if live_versions(objects, key):
                continue  # a later version at this id: its document is legitimate
            doc = index.get(record_id)
        except (StoreError, SearchError):
            continue
        if doc is not None:
            out.append(Finding(FindingKind.INDEX_DISPOSED, key, None, "no index document",
                               "indexed", f"the index still has disposed record {record_id}"))
    return out


def _attachment_findings(links: list[tuple[str, str]], objects: ObjectStore) -> list[Finding]:
    out = []
    for key, version in links:
        try:
            header = dict(Record.parse(objects.get(key, version)).header)
        except (ObjectNotFound, StoreError):
            continue  # disposed (after its message) or unreadable (reported elsewhere)
        a = attachment_of_header(key, version, header)
        if a is None:
            continue
        try:
            held = any(objects.stat(*m).legal_hold for m in message_versions(objects, a.message))
        except StoreError:
            continue
        if not held:
            continue
        for ref in (a.link, *((a.blob,) if a.blob else ())):
            try:
                info = objects.stat(*ref)
            except StoreError:
                continue  # a missing logged object is already an object:missing finding
            if not info.legal_hold:
                out.append(Finding(
                    FindingKind.ATTACHMENT_NOT_HELD, ref[0], ref[1], "legal hold", "none",
                    f"message {a.message} is under a legal hold, its attachment is not",
                ))  # fmt: skip
    return out
