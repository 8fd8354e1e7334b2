"""What the retention jobs share: walking the records, tombstone objects; and, from
the neutral modules, re-deriving a record's policy facts (``archiver.records.facts``)
and resolving a contact to its subject (``archiver.subjects``).

Records are found by listing ``records/`` and reading each header (the record's clear
part). That is one GET per record: fine for the sizes this project is tested at, and the
only source that cannot disagree with the store; a per-subject index in working state is
the way to scale it (see docs/retention.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785

from archiver.errors import NotFound
from archiver.keyspace import RECORDS_PREFIX, TOMBSTONES_PREFIX, record_key
from archiver.records.facts import facts_of
from archiver.records.model import Record, iso
from archiver.store.errors import ObjectExists, ObjectNotFound
from archiver.store.port import LockMode, ObjectStore, Retention
from archiver.subjects.aliases import contact_aliases
from archiver.subjects.identity import resolve_subject


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One stored record version and its clear header."""

    key: str
    version_id: str
    header: Mapping[str, Any]
    sha256: str
    size: int

    @property
    def record_id(self) -> str:
        return str(self.header["record_id"])

    @property
    def subject(self) -> str | None:
        value = self.header.get("subject")
        return value if isinstance(value, str) else None

    @property
    def phone_number_id(self) -> str | None:
        value = (self.header.get("business") or {}).get("phone_number_id")
        return value if isinstance(value, str) else None

    @property
    def raw(self) -> tuple[str, str, int] | None:
        raw = self.header.get("raw")
        if not isinstance(raw, Mapping) or "key" not in raw or "version_id" not in raw:
            return None
        return str(raw["key"]), str(raw["version_id"]), int(raw.get("slot", 0))


def live_versions(objects: ObjectStore, key: str) -> list[str]:
    """Version ids of ``key`` that are objects (not delete markers), newest first."""
    return [
        v.version_id
        for v in objects.list_versions(key)
        if v.key == key and not v.is_delete_marker
    ]


def read_stored_record(objects: ObjectStore, key: str, version_id: str) -> StoredRecord:
    """One record version's clear header, digest and size (raises ObjectNotFound)."""
    body = objects.get(key, version_id)
    record = Record.parse(body)
    return StoredRecord(key, version_id, record.header, record.sha256, len(body))


def iter_records(objects: ObjectStore) -> Iterator[StoredRecord]:
    """Every stored record version, in key order."""
    for v in objects.list_versions(RECORDS_PREFIX):
        if v.is_delete_marker:
            continue
        try:
            yield read_stored_record(objects, v.key, v.version_id)
        except ObjectNotFound:
            continue  # disposed while we walked


def record_by_id(objects: ObjectStore, record_id: str) -> StoredRecord:
    """The record ``record_id`` (its only version). Raises NotFound."""
    key = record_key(record_id)
    versions = live_versions(objects, key)
    if not versions:
        raise NotFound(f"no record {record_id}", code="record_not_found")
    return read_stored_record(objects, key, versions[0])


def write_tombstone(
    objects: ObjectStore, name: str, body: Mapping[str, Any], retention: Retention
) -> tuple[str, str, str, int]:
    """Write-once ``tombstones/<name>`` (canonical JSON); a replay finds its own object.
    Returns ``(key, version_id, sha256, size)``."""
    key = TOMBSTONES_PREFIX + name
    data = rfc8785.dumps(dict(body))
    try:
        put = objects.put(key, data, retention=retention, content_type="application/json")
        return put.key, put.version_id, put.sha256, put.size
    except ObjectExists:
        version = live_versions(objects, key)[0]
        stored = objects.get(key, version)
        return key, version, hashlib.sha256(stored).hexdigest(), len(stored)


def ident_hash(key: str, version_id: str) -> str:
    return hashlib.sha256(f"{key}@{version_id}".encode()).hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def tombstone_retention(mode: LockMode, days: int) -> Retention:
    """Tombstones are evidence: kept as long as the log (``log_retention_days``)."""
    return Retention(mode, now_utc() + timedelta(days=days))


__all__ = [
    "StoredRecord",
    "contact_aliases",
    "facts_of",
    "ident_hash",
    "iso",
    "iter_records",
    "live_versions",
    "read_stored_record",
    "record_by_id",
    "resolve_subject",
    "write_tombstone",
]
