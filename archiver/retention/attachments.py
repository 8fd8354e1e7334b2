"""Which attachments belong to which message: a view of the proof log's ``media_link``
records, so that holds, ``retention apply`` and disposition treat an attachment as part of
the messages that reference it.

The association itself is evidence: the media worker writes an immutable ``media_link``
(or ``media_missing``) record whose clear header names its message (``link_of``, the
message's record id) and, for a link, the blob (``media.key``, ``media.version_id``); its
``record`` leaf (``event`` = the record's kind) is in the log. Nothing here trusts the
webhook's digest (Meta sends base64, blobs are named by the hex digest of the downloaded
bytes) or the media jobs (deleted 30 days after they finish).

This module follows the log from its own cursor (``views/attachments/cursor``), reads
each link record's header once (one GET per link, ever) and keeps two small indexes in
working state, both rebuildable by deleting the cursor::

    views/attachments/msg/<message record id>/<link record id>   {"link": [key, version],
                                                                   "blob": [key, version] | null}
    views/attachments/blob/<h>/<link record id>                   {"message": record id, ...}

(``h`` = SHA-256 of ``blob key@version``.) Every reader catches the view up first, so the
answer covers every link logged before the call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from archiver.keyspace import (
    ATTACHMENTS_BY_BLOB,
    ATTACHMENTS_BY_MESSAGE,
    ATTACHMENTS_CURSOR_KEY,
    record_key,
)
from archiver.ledger.entry import Entry, EntryKind, parse_entry
from archiver.ledger.ports import LogReader
from archiver.records.model import Record
from archiver.retention.common import ident_hash, live_versions
from archiver.store.errors import ObjectNotFound, PreconditionFailed
from archiver.store.port import ObjectStore, StateStore

LINK_KINDS = frozenset({"media_link", "media_missing"})
_CHUNK = 4096
# Cheap pre-filter on the canonical bytes: only link records' leaves are parsed.
_WANTED = tuple(f'"event":"{k}"'.encode() for k in sorted(LINK_KINDS))


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment of one message: its link record and (unless missing) its blob."""

    message: str  # the message's record id
    link_id: str
    link: tuple[str, str]  # (key, version_id) of the media_link / media_missing record
    blob: tuple[str, str] | None  # (key, version_id) of the encrypted blob

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "link_id": self.link_id, "link": list(self.link),
                "blob": list(self.blob) if self.blob else None}


def is_attachment_header(header: Any) -> bool:
    """Whether a record header is an attachment's link (its lifecycle follows a message)."""
    return isinstance(header, dict) and header.get("kind") in LINK_KINDS


def attachment_of_header(key: str, version_id: str, header: dict[str, Any]) -> Attachment | None:
    """The association a link record's header states (pure)."""
    if not is_attachment_header(header) or not isinstance(header.get("link_of"), str):
        return None
    media = header.get("media") if header.get("kind") == "media_link" else None
    blob = None
    if isinstance(media, dict) and media.get("key") and media.get("version_id"):
        blob = (str(media["key"]), str(media["version_id"]))
    return Attachment(str(header["link_of"]), str(header["record_id"]), (key, version_id), blob)


class AttachmentView:
    def __init__(self, *, log: LogReader, objects: ObjectStore, state: StateStore) -> None:
        self.log = log
        self.objects = objects
        self.state = state

    def catch_up(self) -> int:
        """Read the leaves logged since the cursor; returns how many were read. Replays
        are harmless (every write is idempotent), so a lost cursor race costs a re-read."""
        current = self.state.get(ATTACHMENTS_CURSOR_KEY)
        start = int(current.value) if current else 0
        size = self.log.size()
        for chunk in range(start, size, _CHUNK):
            stop = min(chunk + _CHUNK, size)
            for offset, data in enumerate(self.log.entries(chunk, stop)):
                if any(w in data for w in _WANTED):
                    self._handle(chunk + offset, parse_entry(data))
        if size > start:
            try:
                if current is None:
                    self.state.put(ATTACHMENTS_CURSOR_KEY, str(size).encode(), if_absent=True)
                else:
                    self.state.put(
                        ATTACHMENTS_CURSOR_KEY, str(size).encode(), if_match=current.token
                    )
            except PreconditionFailed:
                pass  # another reader moved it on; what we wrote was the same
        return max(0, size - start)

    def _handle(self, _leaf: int, entry: Entry) -> None:
        if entry.kind is not EntryKind.RECORD or entry.fields.get("event") not in LINK_KINDS:
            return
        if entry.key is None or entry.version_id is None:
            return
        try:
            record = Record.parse(self.objects.get(entry.key, entry.version_id))
        except ObjectNotFound:
            return  # disposed since: its message was disposed before it
        found = attachment_of_header(entry.key, entry.version_id, dict(record.header))
        if found is not None:
            self.remember(found)

    def remember(self, a: Attachment) -> None:
        """Write both index entries (idempotent; the media worker calls it too, so that a
        hold placed right after a link is logged sees it before the next catch-up)."""
        doc = json.dumps(a.to_json(), sort_keys=True).encode()
        self.state.put(f"{ATTACHMENTS_BY_MESSAGE}{a.message}/{a.link_id}", doc)
        if a.blob is not None:
            self.state.put(f"{ATTACHMENTS_BY_BLOB}{ident_hash(*a.blob)}/{a.link_id}", doc)

    # -- answers ------------------------------------------------------------------------
    def of_messages(self, record_ids: Iterable[str]) -> list[Attachment]:
        """The attachments of the messages ``record_ids`` (call :meth:`catch_up` first)."""
        out: list[Attachment] = []
        for record_id in sorted(set(record_ids)):
            out += self._read(f"{ATTACHMENTS_BY_MESSAGE}{record_id}/")
        return out

    def of_blob(self, key: str, version_id: str) -> list[Attachment]:
        """The links (and so the messages) that reference one blob version."""
        return self._read(f"{ATTACHMENTS_BY_BLOB}{ident_hash(key, version_id)}/")

    def _read(self, prefix: str) -> list[Attachment]:
        out = []
        for name in sorted(self.state.list(prefix)):
            value = self.state.get(name)
            if value is None:
                continue
            doc = json.loads(value.value)
            blob = doc.get("blob")
            out.append(Attachment(str(doc["message"]), name.rsplit("/", 1)[-1],
                                  (str(doc["link"][0]), str(doc["link"][1])),
                                  (str(blob[0]), str(blob[1])) if blob else None))
        return out


def message_versions(objects: ObjectStore, record_id: str) -> list[tuple[str, str]]:
    """``(key, version)`` of a message record still stored (empty: disposed or never)."""
    key = record_key(record_id)
    return [(key, v) for v in live_versions(objects, key)]


__all__ = [
    "Attachment",
    "AttachmentView",
    "attachment_of_header",
    "is_attachment_header",
    "message_versions",
]
