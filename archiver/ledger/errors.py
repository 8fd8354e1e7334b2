"""Errors of the proof log.

ArchiverError
└── LedgerError               root of this package
    ├── ProofError            a proof / root / size failed verification (merkle)
    ├── TileError             malformed tile or entry bundle (tiles)
    ├── NoteError             malformed key text or note, bad signature (note)
    │   └── CheckpointError   malformed checkpoint body, wrong origin (checkpoint)
    ├── EntryError            entry cannot be built or parsed (entry)
    ├── LogCorrupted          stored log data disagree with the sequencing state (log)
    └── CheckpointRefused     the tree to sign is inconsistent with the last one (checkpoints)
"""

from __future__ import annotations

from archiver.errors import ArchiverError


class LedgerError(ArchiverError):
    code = "ledger_error"


class ProofError(LedgerError):
    """A proof, hash or tree size failed verification (or an impossible range was asked)."""

    code = "proof_invalid"


class TileError(LedgerError):
    """A tile or entry bundle is malformed or addressed outside the tree."""

    code = "tile_invalid"


class NoteError(LedgerError):
    """A key text, note or checkpoint is malformed, or its signatures do not verify."""

    code = "note_invalid"


class CheckpointError(NoteError):
    code = "checkpoint_invalid"


class EntryError(LedgerError):
    """An entry cannot be built or parsed."""

    code = "entry_invalid"


class LogCorrupted(LedgerError):
    """Stored tiles/bundles disagree with what the sequencing state says must be there."""

    code = "log_corrupted"


class CheckpointRefused(LedgerError):
    """Refused to sign: the tree is not consistent with the previous signed checkpoint."""

    code = "checkpoint_refused"
