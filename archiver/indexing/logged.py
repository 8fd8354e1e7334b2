"""The record a log entry names, checked against the entry before anyone believes it.

Everything built from the log (the search index, the consent and Coexistence views) reads
records through :func:`logged_record`: the stored bytes must hash to the entry's
``sha256``, or they are not what the log promised. Such a record is skipped loudly (an
error log line naming the object; ``archiver verify`` reports it as a finding), never
believed and never a dead end: the reader goes on with the rest of the log.
"""

from __future__ import annotations

import hashlib

from archiver.indexing.recent import RecentObjects
from archiver.ledger.entry import Entry
from archiver.logs import get_logger
from archiver.records.model import Record, RecordError
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore

log = get_logger("archiver.indexing.logged")


def logged_record(
    objects: ObjectStore,
    key: str,
    version_id: str,
    sha256: str | None,
    *,
    body: bytes | None = None,
    reader: str = "view",
) -> Record | None:
    """The record stored at ``key``/``version_id`` if its bytes hash to ``sha256`` (the
    log entry's; None: an entry that names no digest, read unchecked). ``body``: bytes
    already in hand (a cache), checked the same way, read from the store only when absent.

    None when the object is gone (disposed since: its tombstone is later in the log), when
    its bytes are not the logged ones, or when they are not a record. ``reader`` names the
    caller in the error line (``<reader>_record_altered`` / ``_unreadable``)."""
    if body is None:
        try:
            body = objects.get(key, version_id)
        except ObjectNotFound:
            return None
    if sha256 is not None and hashlib.sha256(body).hexdigest() != sha256:
        log.error(f"{reader}_record_altered", object_key=key, version_id=version_id)
        return None
    try:
        return Record.parse(body)
    except RecordError:
        log.error(f"{reader}_record_unreadable", object_key=key, version_id=version_id)
        return None


def record_of_entry(
    objects: ObjectStore,
    entry: Entry,
    *,
    reader: str = "view",
    recent: RecentObjects | None = None,
) -> Record | None:
    """The record a log entry names (:func:`logged_record`); None for an entry naming no
    object. ``recent``: this process's cache of records just written, taken from as
    ``reader`` (the store is read when it does not hold them)."""
    if entry.key is None or entry.version_id is None:
        return None
    logged = entry.fields.get("sha256")
    digest = logged if isinstance(logged, str) else None
    body = recent.take(entry.key, entry.version_id, digest, reader) if recent else None
    return logged_record(objects, entry.key, entry.version_id, digest, body=body, reader=reader)
