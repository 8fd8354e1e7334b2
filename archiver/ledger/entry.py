"""Log entries: the bytes of one leaf of the proof log, pure.

An entry is the RFC 8785 (JCS) canonical JSON of a small object::

    {"v": 1, "kind": <EntryKind>, "key": ..., "version_id": ..., "sha256": ...,
     "size": ..., "retain_until": ..., "time": ..., <kind-specific extras>}

so its leaf hash ``SHA-256(0x00 ‖ bytes)`` is reproducible anywhere. Built by one
constructor, :func:`make_entry`, which returns the bytes together with the leaf hash.

Privacy rule: log entries are immutable and public to auditors, so they never carry a
phone number, a name or message content. Callers pass object keys and pseudonyms (keyed
HMACs of identities) only. :func:`make_entry` refuses extras whose string values look
like phone numbers (E.164-ish digit runs) as a last line of defence; it cannot catch
names, so the rule stays the caller's duty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from archiver.ledger.errors import EntryError
from archiver.ledger.merkle import hash_leaf
from archiver.records import canonical

ENTRY_VERSION = 1
_RESERVED = frozenset({"v", "kind", "key", "version_id", "sha256", "size", "retain_until", "time"})
_PHONE_LIKE = re.compile(r"\+?\d[\d ().-]{6,}\d")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Identifiers that may contain digit runs by chance: random hex ids (key ids, hashes) and
# our pseudonym tokens (``r_``/``s_``/``c_``… + lowercase base32).
_IDENTIFIER = re.compile(
    r"[0-9a-f]{16,}|[a-z]_[a-z2-7]{16,}"
    r"|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?"  # ISO 8601 times
    r"|[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*"  # C2SP note keys: name+keyid+base64
)


class EntryKind(StrEnum):
    """What a leaf describes. Object kinds name one stored object version."""

    RAW = "raw"
    RECORD = "record"
    MEDIA = "media"
    TOMBSTONE = "tombstone"
    AUDIT = "audit"
    EXPORT = "export"
    REPORT = "report"
    CHECKPOINT = "checkpoint"  # a signed checkpoint object, named by the next signing
    CHECKPOINT_KEY = "checkpoint_key"  # key rotation announcement
    RETENTION_EXTENDED = "retention_extended"
    HOLD_PLACED = "hold_placed"
    HOLD_RELEASED = "hold_released"
    KEY_CREATED = "key_created"
    KEY_SHREDDED = "key_shredded"
    DISPOSED = "disposed"
    DISPOSITION_APPROVED = "disposition_approved"  # one person's approval of one version
    VERIFY_RUN = "verify_run"
    SUBJECT_MERGED = "subject_merged"  # two subject ids found to be one person


# Kinds whose (key, version_id, sha256, size) name an object version that must exist.
OBJECT_KINDS = frozenset(
    {
        EntryKind.RAW,
        EntryKind.RECORD,
        EntryKind.MEDIA,
        EntryKind.TOMBSTONE,
        EntryKind.AUDIT,
        EntryKind.EXPORT,
        EntryKind.REPORT,
        EntryKind.CHECKPOINT,
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """A parsed entry plus its canonical bytes and RFC 6962 leaf hash."""

    kind: EntryKind
    fields: Mapping[str, Any]
    data: bytes
    leaf_hash: bytes

    @property
    def key(self) -> str | None:
        v = self.fields.get("key")
        return v if isinstance(v, str) else None

    @property
    def version_id(self) -> str | None:
        v = self.fields.get("version_id")
        return v if isinstance(v, str) else None


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise EntryError("times must be timezone-aware")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _check_private(value: Any, path: str) -> None:
    if isinstance(value, str):
        if _PHONE_LIKE.search(value) and not _IDENTIFIER.fullmatch(value):
            raise EntryError(f"{path} looks like a phone number; log pseudonyms only")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_private(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_private(v, f"{path}[{i}]")


def make_entry(
    kind: EntryKind,
    *,
    time: datetime,
    key: str | None = None,
    version_id: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    retain_until: datetime | None = None,
    **extras: Any,
) -> Entry:
    """Build an entry: canonical bytes and leaf hash. Raises EntryError."""
    kind = EntryKind(kind)
    if kind in OBJECT_KINDS and (key is None or version_id is None or sha256 is None):
        raise EntryError(f"a {kind} entry needs key, version_id and sha256")
    if sha256 is not None and not _HEX64.fullmatch(sha256):
        raise EntryError("sha256 must be 64 lowercase hex digits")
    clash = _RESERVED.intersection(extras)
    if clash:
        raise EntryError(f"extras may not redefine {sorted(clash)}")
    _check_private(extras, "extras")
    obj: dict[str, Any] = {"v": ENTRY_VERSION, "kind": str(kind), "time": _iso(time)}
    for name, value in (("key", key), ("version_id", version_id), ("sha256", sha256)):
        if value is not None:
            obj[name] = value
    if size is not None:
        obj["size"] = size
    if retain_until is not None:
        obj["retain_until"] = _iso(retain_until)
    obj.update(extras)
    try:
        data = canonical.dumps(obj)
    except Exception as exc:  # rfc8785 raises several types for unencodable values
        raise EntryError(f"entry is not canonical-JSON encodable: {exc}") from exc
    return Entry(kind, obj, data, hash_leaf(data))


def key_created_entry(event: Mapping[str, Any]) -> bytes:
    """The ``key_created`` leaf of a key-store creation event (``KeyStore.get_or_create``:
    ``kind``, ``time``, ``subject``, ``key_id``), timed when the key was created."""
    return make_entry(
        EntryKind.KEY_CREATED,
        time=datetime.fromisoformat(str(event["time"])),
        subject=event.get("subject"),
        key_id=event.get("key_id"),
        event=event["kind"],
    ).data


def parse_entry(data: bytes) -> Entry:
    """Parse entry bytes (and check they are canonical). Raises EntryError."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EntryError(f"entry is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != ENTRY_VERSION:
        raise EntryError("not a version-1 entry object")
    raw_kind = obj.get("kind")
    if not isinstance(raw_kind, str) or raw_kind not in EntryKind.__members__.values():
        raise EntryError(f"unknown entry kind {raw_kind!r}")
    kind = EntryKind(raw_kind)
    if canonical.dumps(obj) != data:
        raise EntryError("entry bytes are not RFC 8785 canonical")
    return Entry(kind, obj, data, hash_leaf(data))
