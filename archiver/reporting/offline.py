"""``archiver verify-report``: check a signed report offline, with no settings and no data.

On top of ``reports.verify.verify_report`` (signature, whole-document coverage, the twin
and the hash printed on every page) this checks the log checkpoint the twin names: its
signed note must verify under the log's public key (a C2SP verifier key, ``--public-key``)
and its tree size and root must be the ones the twin states. Without a key the checkpoint
is reported as not checked.

The signer must be pinned (``--cert``, the archive's report-signing certificate): anyone
can make a key pair and sign a PDF, and a checkpoint note copied from a genuine report
vouches for the log, not for the figures. Without the pin a report never verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archiver.ledger.checkpoint_format import open_checkpoint
from archiver.ledger.errors import LedgerError
from archiver.ledger.note import Verifier
from reports.verify import Check, verify_report


@dataclass(frozen=True, slots=True)
class OfflineResult:
    ok: bool
    checks: tuple[Check, ...]
    summary: str


def _text_or_file(value: str) -> str:
    path = Path(value)
    try:
        if path.is_file():
            return path.read_text().strip()
    except OSError:
        pass
    return value.strip()


def verify_file(pdf: bytes, *, public_key: str | None = None,
                cert_pem: bytes | None = None) -> OfflineResult:
    """Verify a report's bytes. ``public_key``: the log's verifier key (text or file)."""
    result = verify_report(pdf, cert_pem=cert_pem)
    checks = list(result.checks)
    ok = result.ok
    if cert_pem is None:
        checks.append(Check("signer_pinned", False,
                            "no --cert given: a report signed by anyone would pass; pin the "
                            "archive's report-signing certificate"))
        ok = False
    if public_key is not None:
        note = result.checkpoint_note
        try:
            if not note:
                raise LedgerError("the twin carries no signed checkpoint note")
            verifier = Verifier.from_key_text(_text_or_file(public_key))
            cp = open_checkpoint(note, [verifier])
            if (cp.size, cp.root_hash.hex()) != (result.checkpoint_size, result.checkpoint_root):
                raise LedgerError("the signed checkpoint is not the one the twin states")
            checks.append(Check("checkpoint_signed", True,
                                f"tree size {cp.size} signed by {verifier.name}"))
        except (LedgerError, ValueError) as exc:
            checks.append(Check("checkpoint_signed", False, str(exc)))
            ok = False
    else:
        checks.append(Check("checkpoint_signed", True,
                            "not checked: no --public-key given (the log's verifier key)"))
    failed = [c for c in checks if not c.ok]
    if ok and not failed:
        summary = (f"OK: signed by {result.signer_subject} ({result.pades_level}), twin "
                   f"{result.twin_sha256}, checkpoint {result.checkpoint_size}")
    else:
        names = ", ".join(f"{c.name} ({c.detail})" for c in failed) or "a required check"
        summary = f"FAILED: {names}"
    return OfflineResult(ok and not failed, tuple(checks), summary)
