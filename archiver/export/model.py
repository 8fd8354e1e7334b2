"""What the package writer is handed: plain, already-gathered values (pure).

The caller (the export job) reads records from the archive, opens their sealed content,
finds their log leaves and proofs, and builds one :class:`ExportItem` per record. The
writer never reaches back into the archive. Every constructor checks what it can on its
own (ids usable as file names, aware times, hash shapes, a tombstone carrying no
content), raising :class:`~archiver.export.errors.ExportInputError`.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal

from archiver.export.errors import ExportInputError
from archiver.ledger.checkpoint_format import Checkpoint, open_checkpoint
from archiver.ledger.errors import NoteError
from archiver.ledger.note import Verifier

# Ids become path segments in the zip: keep them to a portable alphabet.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,199}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Direction = Literal["inbound", "outbound"]
ReceiptAction = Literal["read", "delivered"]
# Something that opens the bytes afresh each time it is called (attachments are read twice:
# once into natives/, once into the RSMF slice), or the bytes themselves, or a file.
ByteSource = bytes | Path | Callable[[], BinaryIO]


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ExportInputError(f"{what} {value!r} is not a portable id ([A-Za-z0-9_.=-])")
    return value


def _check_hex(value: str, what: str) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ExportInputError(f"{what} must be 64 lowercase hex digits")


def _check_time(value: datetime | None, what: str) -> None:
    if value is not None and value.tzinfo is None:
        raise ExportInputError(f"{what} must be timezone-aware")


def open_source(source: ByteSource) -> BinaryIO:
    """A fresh reader over ``source`` (the caller closes it)."""
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, Path):
        return source.open("rb")
    return source()


@dataclass(frozen=True, slots=True)
class Participant:
    """A person or business in a conversation: a stable id and what reviewers read."""

    id: str
    display: str

    def __post_init__(self) -> None:
        if not self.id:
            raise ExportInputError("participant id must not be empty")


@dataclass(frozen=True, slots=True)
class LeafProof:
    """A log entry's bytes, its leaf index and its RFC 6962 inclusion proof (32-byte
    hashes) against the package's checkpoint."""

    entry: bytes
    leaf_index: int
    proof: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.leaf_index < 0:
            raise ExportInputError("leaf index must not be negative")
        if any(len(h) != 32 for h in self.proof):
            raise ExportInputError("proof hashes must be 32 bytes")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A media file of a message, in its original (decrypted) bytes."""

    id: str  # unique in the export; the Bates mapping's key
    name: str  # original file name, for reviewers
    mime_type: str
    sha256: str  # of the original bytes; the writer checks it while copying
    source: ByteSource = field(repr=False)
    size: int | None = None

    def __post_init__(self) -> None:
        check_id(self.id, "attachment id")
        _check_hex(self.sha256, "attachment sha256")


@dataclass(frozen=True, slots=True)
class Edit:
    participant: str
    timestamp: datetime
    previous: str
    new: str

    def __post_init__(self) -> None:
        _check_time(self.timestamp, "edit timestamp")


@dataclass(frozen=True, slots=True)
class Reaction:
    participant: str
    emoji: str
    timestamp: datetime | None = None

    def __post_init__(self) -> None:
        if not self.emoji:
            raise ExportInputError("a reaction needs its emoji")
        _check_time(self.timestamp, "reaction timestamp")


@dataclass(frozen=True, slots=True)
class Receipt:
    participant: str
    action: ReceiptAction
    timestamp: datetime

    def __post_init__(self) -> None:
        if self.action not in ("read", "delivered"):
            raise ExportInputError(f"receipt action {self.action!r} is not read or delivered")
        _check_time(self.timestamp, "receipt timestamp")


@dataclass(frozen=True, slots=True)
class Erasure:
    """The record's subject was crypto-shredded: the package names the erasure only."""

    erased_at: datetime
    request_id: str

    def __post_init__(self) -> None:
        _check_time(self.erased_at, "erasure date")
        if not self.request_id:
            raise ExportInputError("an erasure needs its request id")

    def describe(self) -> str:
        return (
            f"[Content erased on {self.erased_at.date().isoformat()} under erasure request "
            f"{self.request_id}; the record exists, its content was destroyed.]"
        )


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One record of the export with everything every format needs.

    ``record_json`` is the record exactly as stored (RFC 8785 bytes, content sealed), the
    bytes the log entry's ``sha256`` names. ``text`` and the rest are the opened content.
    An erased record has ``erasure`` set and no text, attachments, edits, reactions or
    receipts: the constructor refuses content on a tombstone.
    """

    record_id: str
    kind: str  # the record's kind (message, status, ...)
    conversation_id: str
    conversation_display: str
    timestamp: datetime
    direction: Direction
    origin: str  # customer, business_app (phone app echo), api, history_sync, ...
    sender: Participant
    recipients: tuple[Participant, ...]
    record_json: bytes = field(repr=False)
    record_sha256: str
    object_key: str
    version_id: str
    leaf: LeafProof
    custodian: str
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    edits: tuple[Edit, ...] = ()
    reactions: tuple[Reaction, ...] = ()
    receipts: tuple[Receipt, ...] = ()
    revoked: bool = False
    erasure: Erasure | None = None

    def __post_init__(self) -> None:
        check_id(self.record_id, "record id")
        check_id(self.conversation_id, "conversation id")
        _check_time(self.timestamp, "timestamp")
        _check_hex(self.record_sha256, "record sha256")
        if self.direction not in ("inbound", "outbound"):
            raise ExportInputError(f"direction {self.direction!r} is not inbound or outbound")
        if hashlib.sha256(self.record_json).hexdigest() != self.record_sha256:
            raise ExportInputError(f"record {self.record_id}: bytes do not match its hash")
        if self.erasure is not None and (
            self.text or self.attachments or self.edits or self.reactions or self.receipts
        ):
            raise ExportInputError(
                f"record {self.record_id} is erased: a tombstone carries no content"
            )
        ids = [a.id for a in self.attachments]
        if len(set(ids)) != len(ids):
            raise ExportInputError(f"record {self.record_id}: attachment ids repeat")


@dataclass(frozen=True, slots=True)
class RawSlot:
    """One in-scope delivery of a raw batch, decrypted (Meta's body byte for byte)."""

    index: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RawBatch:
    """A stored group-commit batch, unchanged (other people's slots stay sealed), plus the
    decrypted slots that are in scope. The writer checks each slot against the batch
    header's SHA-256."""

    key: str
    version_id: str
    data: bytes = field(repr=False)
    slots: tuple[RawSlot, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    """A pre-rendered readable transcript (PDF) of one conversation, its page count and
    the first page's Bates number (printed on its pages by the renderer)."""

    conversation_id: str
    source: ByteSource = field(repr=False)
    pages: int
    first_bates: int
    custodian: str = ""

    def __post_init__(self) -> None:
        check_id(self.conversation_id, "conversation id")
        if self.pages < 1 or self.first_bates < 0:
            raise ExportInputError("a transcript needs at least one page and a Bates number")


@dataclass(frozen=True, slots=True)
class LogBundle:
    """The log the package is proven against: one signed checkpoint (C2SP note) and the
    verifier key (C2SP vkey) it was checked with."""

    origin: str
    checkpoint_note: str
    verifier_key: str
    checkpoint: Checkpoint

    @classmethod
    def from_note(cls, note: str, verifier_key: str, origin: str | None = None) -> LogBundle:
        """Check the note under the key (and origin) now: a package is never built on a
        checkpoint that does not verify. Raises ExportInputError."""
        try:
            cp = open_checkpoint(note, [Verifier.from_key_text(verifier_key)], origin)
        except NoteError as exc:
            raise ExportInputError(f"checkpoint does not verify: {exc.message}") from exc
        return cls(cp.origin, note, verifier_key, cp)

    @property
    def tree_size(self) -> int:
        return self.checkpoint.size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash


@dataclass(frozen=True, slots=True)
class ExportLeaf:
    """The export's own log leaf, proven against a checkpoint signed after it, plus the
    consistency proof from the package's first checkpoint to that one."""

    leaf: LeafProof
    later: LogBundle
    consistency: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PackageSeal:
    """What the export leaf must name besides the record list so that it binds every
    file of the package (``archiver.export.manifest``): the file list, the raw batch list
    and the manifest's head, each a SHA-256 (hex)."""

    files_sha256: str
    raw_batches_sha256: str
    head_sha256: str

    def entry_fields(self) -> dict[str, str]:
        return {"files_sha256": self.files_sha256,
                "raw_batches_sha256": self.raw_batches_sha256,
                "head_sha256": self.head_sha256}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CustodyEvent:
    """One line of the chain of custody (an audit event of the case)."""

    time: datetime
    actor: str
    action: str
    details: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_time(self.time, "custody event time")


@dataclass(frozen=True, slots=True)
class ExportInfo:
    """Who exports what: the case, its query and scope, the package's options."""

    case_id: str
    case_name: str
    exported_by: str
    exported_at: datetime
    query: dict[str, object]
    time_zone: str = "UTC"
    bates_prefix: str = ""
    bates_digits: int = 8
    matter_number: str = ""

    def __post_init__(self) -> None:
        check_id(self.case_id, "case id")
        _check_time(self.exported_at, "export time")
        if not 1 <= self.bates_digits <= 20:
            raise ExportInputError("Bates digits must be 1..20")
        if any(c in self.bates_prefix for c in "\x14\r\n\u00fe\u00ae/\\"):
            raise ExportInputError("Bates prefix has a delimiter or path character")

    def bates(self, number: int) -> str:
        if number < 0 or len(str(number)) > self.bates_digits:
            raise ExportInputError(f"Bates number {number} does not fit {self.bates_digits} digits")
        return f"{self.bates_prefix}{number:0{self.bates_digits}d}"
