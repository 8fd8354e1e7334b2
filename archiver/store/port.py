"""Ports for the two stores.

``ObjectStore`` is the evidence store: locked (S3 Object Lock) and versioned. An
object's identity everywhere is ``(key, version_id)``; reads go by version id.
Writes are write-once: a key that already has any version is refused.

``StateStore`` is working state (tokens, cursors, holds registry, leases, key
store, log sequencing state): unlocked, unversioned, with compare-and-swap so
several app replicas can coordinate through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


class LockMode(StrEnum):
    GOVERNANCE = "GOVERNANCE"
    COMPLIANCE = "COMPLIANCE"


@dataclass(frozen=True, slots=True)
class Retention:
    mode: LockMode
    retain_until: datetime  # timezone-aware UTC


# A lock must end in the future when it is taken: S3 Object Lock refuses a retain-until
# date in the past (InvalidRequest, "the retain until date must be in the future"). A
# policy's end already past at write time (a history message older than a message_time
# period) is locked this much longer, so the write succeeds and disposition takes it soon.
MIN_LOCK = timedelta(seconds=10)


def lock_at_least(mode: LockMode, until: datetime, now: datetime) -> Retention:
    """The lock to take for a policy end ``until`` at ``now``: ``until``, but never ending
    within :data:`MIN_LOCK` of ``now``. The record's header and log leaf keep the policy's
    own date; only the store's lock is lengthened."""
    return Retention(mode, max(until, now + MIN_LOCK))


@dataclass(frozen=True, slots=True)
class PutResult:
    key: str
    version_id: str
    sha256: str  # lowercase hex of the bytes we sent, computed by us
    size: int


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    version_id: str
    size: int
    sha256: str | None  # our own SHA-256 recorded at write time (never an ETag)
    retention: Retention | None
    legal_hold: bool
    last_modified: datetime | None


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One row of a version listing; delete markers included."""

    key: str
    version_id: str
    is_delete_marker: bool
    is_latest: bool
    size: int
    last_modified: datetime | None


class ObjectStore(Protocol):
    """Evidence store. All methods raise ``archiver.store.errors.StoreError`` subclasses."""

    name: str  # "s3" or "local", for /readyz and logs

    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention,
        legal_hold: bool = False,
        content_type: str = "application/octet-stream",
        fresh: bool = False,
    ) -> PutResult:
        """Write-once create. Raises ObjectExists if the key has any version.

        ``fresh=True``: the server's conditional create alone guards the key; adapters may
        skip their own look-up for older versions and delete markers (one round trip less
        on S3). For keys with a random part never used before (raw batches, audit
        batches), and for deterministic keys that this app only ever deletes by version id,
        so that no delete marker of ours can be on them (records, log tiles): a current
        version is still refused (ObjectExists). A marker planted from outside is
        tampering that ``verify`` reports (``object:delete_marker``); a write over it adds
        a version next to the locked one, never in its place."""

    def get(self, key: str, version_id: str) -> bytes: ...

    def stat(self, key: str, version_id: str) -> ObjectInfo: ...

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None: ...

    def extend_retention(self, key: str, version_id: str, retain_until: datetime) -> None:
        """Raise RetentionShortening when ``retain_until`` is before the current date."""

    def delete_version(self, key: str, version_id: str) -> None:
        """Delete one version. Locked or held -> ObjectLocked (refused by the server on S3)."""

    def list_versions(self, prefix: str = "") -> Iterator[VersionEntry]:
        """Every version and delete marker under ``prefix``, keys in lexical order."""

    def list_keys(self, prefix: str = "") -> Iterator[str]: ...


@dataclass(frozen=True, slots=True)
class StateValue:
    value: bytes
    token: str  # opaque compare-and-swap token (ETag on S3, a counter in SQLite)


class StateStore(Protocol):
    """Working state with compare-and-swap. Raises StoreError subclasses."""

    name: str

    def ping(self) -> None: ...

    def get(self, key: str) -> StateValue | None: ...

    def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        """Store ``value``; return the new token. ``if_match`` / ``if_absent`` make it a
        compare-and-swap that raises PreconditionFailed when lost."""

    def delete(self, key: str, *, if_match: str | None = None) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in lexical order."""
