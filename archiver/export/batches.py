"""Read a raw-capture batch's header (pure): the per-slot SHA-256 of each plaintext body.

This is the outsider's reading of the container of ``docs/formats.md`` (``WARAW1\\n``,
u32 big-endian header length, RFC 8785 JSON header, sealed payloads), kept independent of
the capture code on purpose: the verifier must not trust the code that wrote the batch.
"""

from __future__ import annotations

import json
import struct

from archiver.export.errors import ExportInputError

MAGIC = b"WARAW1\n"
_LEN = struct.Struct(">I")


def slot_hashes(data: bytes) -> dict[int, str]:
    """``{slot index: SHA-256 hex of the plaintext body}``. Raises ExportInputError."""
    start = len(MAGIC) + _LEN.size
    if not data.startswith(MAGIC) or len(data) < start:
        raise ExportInputError("not a raw capture batch")
    (length,) = _LEN.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start : start + length])
        return {int(d["i"]): str(d["sha256"]) for d in header["deliveries"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportInputError(f"raw batch header unreadable: {exc}") from exc


def batch_name(key: str) -> str:
    """The batch's file name in the package: its object key's last segment."""
    return key.rstrip("/").rsplit("/", 1)[-1]
