"""Per-object checks of ``archiver verify`` (see :mod:`archiver.ledger.verify`).

A logged object version is checked in two steps so that its read can start while the
log is still being scanned: :func:`fetch` reads the bytes by version id and hashes them
(nothing here needs the rest of the log), :func:`compare` then checks the result against
the latest logged state; :func:`check_lock` compares legal hold and retention (a
``stat``). Store errors become findings, never exceptions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from archiver.store.errors import ObjectNotFound, StoreError
from archiver.store.port import ObjectStore


class FindingKind(StrEnum):
    LOG_UNREADABLE = "log:unreadable"
    ENTRY_INVALID = "entry:invalid"
    LEAF_MISMATCH = "tile:leaf_mismatch"
    TILE_MISMATCH = "tile:node_mismatch"
    ROOT_MISMATCH = "log:root_mismatch"
    CHECKPOINT_INVALID = "checkpoint:invalid"
    CHECKPOINT_INCONSISTENT = "checkpoint:inconsistent"
    OBJECT_MISSING = "object:missing"
    OBJECT_UNREADABLE = "object:unreadable"
    HASH_MISMATCH = "object:hash_mismatch"
    SIZE_MISMATCH = "object:size_mismatch"
    HOLD_MISMATCH = "object:hold_mismatch"
    RETENTION_MISMATCH = "object:retention_mismatch"
    DELETE_MARKER = "object:delete_marker"
    EXTRA_VERSION = "object:extra_version"
    DISPOSED_PRESENT = "object:disposed_present"
    # A raw batch older than the grace window the log does not name: captured and
    # acknowledged, but its processing never finished (its records are not logged).
    BATCH_STUCK = "batch:stuck"
    # Erasure residue (archiver.retention.residue): copies of erased data still present.
    ERASED_KEY_MATERIAL = "keys:erased_material"
    ERASED_COPY = "state:erased_copy"
    ERASED_INDEXED = "index:erased_document"
    # Retention findings (archiver.retention.verify_findings): index and working state.
    INDEX_DISPOSED = "index:disposed_present"  # an index document of a disposed record
    ATTACHMENT_NOT_HELD = "media:message_held_attachment_not"  # message held, blob/link not
    # Not a finding: reported beside them (see the module docstring).
    PENDING = "object:pending"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    key: str | None
    version_id: str | None
    expected: str | None
    found: str | None
    message: str


@dataclass
class Expect:
    """Latest logged state of one object version."""

    sha256: str
    size: int | None
    retain_until: str | None
    hold: bool | None = None  # None: no hold event logged
    lock_logged: bool = False


@dataclass(frozen=True, slots=True)
class Fetched:
    """What reading one version gave: its SHA-256 and size, or why it could not be read."""

    sha256: str | None
    size: int | None
    missing: bool = False
    error: str | None = None


def fetch(objects: ObjectStore, key: str, version_id: str) -> Fetched:
    try:
        data = objects.get(key, version_id)
    except ObjectNotFound:
        return Fetched(None, None, missing=True)
    except StoreError as exc:
        return Fetched(None, None, error=str(exc))
    return Fetched(hashlib.sha256(data).hexdigest(), len(data))


def compare(key: str, vid: str, exp: Expect, got: Fetched) -> list[Finding]:
    if got.missing:
        return [
            Finding(
                FindingKind.OBJECT_MISSING,
                key,
                vid,
                exp.sha256,
                None,
                "logged object version is missing",
            )
        ]
    if got.error is not None:
        return [Finding(FindingKind.OBJECT_UNREADABLE, key, vid, exp.sha256, None, got.error)]
    out: list[Finding] = []
    if got.sha256 != exp.sha256:
        out.append(
            Finding(
                FindingKind.HASH_MISMATCH,
                key,
                vid,
                exp.sha256,
                got.sha256,
                "object bytes differ from the logged SHA-256",
            )
        )
    if exp.size is not None and got.size != exp.size:
        out.append(
            Finding(
                FindingKind.SIZE_MISMATCH,
                key,
                vid,
                str(exp.size),
                str(got.size),
                "object size differs from the log",
            )
        )
    return out


def check_lock(objects: ObjectStore, key: str, vid: str, exp: Expect) -> list[Finding]:
    """Legal hold and retention of a version against the latest logged state."""
    out: list[Finding] = []
    try:
        info = objects.stat(key, vid)
    except ObjectNotFound:
        return []  # reported by the read as object:missing
    except StoreError as exc:
        return [Finding(FindingKind.OBJECT_UNREADABLE, key, vid, None, None, str(exc))]
    want_hold = bool(exp.hold)
    if info.legal_hold != want_hold:
        out.append(
            Finding(
                FindingKind.HOLD_MISMATCH,
                key,
                vid,
                str(want_hold),
                str(info.legal_hold),
                "legal hold differs from the log",
            )
        )
    if exp.retain_until is not None:
        # S3 keeps retain-until at whole seconds; compare at that precision.
        want = datetime.fromisoformat(exp.retain_until.replace("Z", "+00:00"))
        want = want.replace(microsecond=0)
        got = info.retention.retain_until if info.retention else None
        if got is None or got < want:
            out.append(
                Finding(
                    FindingKind.RETENTION_MISMATCH,
                    key,
                    vid,
                    exp.retain_until,
                    got.isoformat() if got else None,
                    "retention is shorter than the log says",
                )
            )
    return out
