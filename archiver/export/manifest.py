"""The shapes of ``manifest.json`` and the digest of its record list (pure).

The record list's digest is what the export's own log leaf names (``records_sha256``):
``SHA-256`` over, for each record object in manifest order, its RFC 8785 canonical JSON
followed by one ``\\n``. An outsider recomputes it from the parsed manifest with any JCS
implementation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from archiver.export.model import LeafProof, LogBundle
from archiver.records import canonical


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def record_line(obj: Mapping[str, Any]) -> bytes:
    """One record's contribution to the record-list digest."""
    return canonical.dumps(dict(obj)) + b"\n"


def records_digest(records: Iterable[Mapping[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(record_line(r))
    return h.hexdigest()


def leaf_fields(leaf: LeafProof) -> dict[str, Any]:
    return {
        "entry": b64(leaf.entry),
        "leaf_index": leaf.leaf_index,
        "proof": [b64(h) for h in leaf.proof],
    }


def log_fields(log: LogBundle) -> dict[str, Any]:
    return {
        "origin": log.origin,
        "verifier_key": log.verifier_key,
        "checkpoint": log.checkpoint_note,
        "tree_size": log.tree_size,
        "root_hash": b64(log.root_hash),
    }
