"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) bodies, pure.

Body: origin line, tree size in decimal (no leading zeros), base64 root hash, then
optional extension lines; every line ends in a newline. A checkpoint is published as
a signed note (:mod:`archiver.ledger.note`). Parse errors raise :class:`CheckpointError`
(a :class:`~archiver.ledger.note.NoteError`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from archiver.ledger.errors import CheckpointError
from archiver.ledger.note import Signer, Verifier, open_note, sign_note

HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("bad origin")
        if self.size < 0:
            raise CheckpointError("negative tree size")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("root hash must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise CheckpointError("bad extension line")

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, size and root lines")
        origin, size_s, root_s, *ext = lines
        if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s[0] == "0"):
            raise CheckpointError("bad tree size")
        try:
            root = base64.b64decode(root_s, validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("bad root hash encoding") from None
        return cls(origin, int(size_s), root, tuple(ext))


def sign_checkpoint(cp: Checkpoint, signers: Sequence[Signer]) -> str:
    """The checkpoint as a signed note."""
    return sign_note(cp.to_text(), signers)


def open_checkpoint(
    note_text: str, verifiers: Sequence[Verifier], origin: str | None = None
) -> Checkpoint:
    """Verify the note's signatures and parse its body; check the origin if given."""
    note = open_note(note_text, verifiers)
    cp = Checkpoint.parse(note.text)
    if origin is not None and cp.origin != origin:
        raise CheckpointError(f"checkpoint origin {cp.origin!r}, want {origin!r}")
    return cp
