"""The shapes of ``manifest.json`` and the digests its export leaf names (pure).

The export's own log leaf names the record list (``records_sha256``), the file list
(``files_sha256``), the raw batch list (``raw_batches_sha256``): each the ``SHA-256``
over, for each object of that list in manifest order, its RFC 8785 canonical JSON followed
by one ``\\n``; and the manifest's head (``head_sha256``): the ``SHA-256`` of the RFC 8785
canonical JSON of the manifest without its ``export``, ``files``, ``raw_batches`` and
``records`` members. Together they bind every byte of the package, not only the sealed
natives: the text, RSMF, transcripts, load file and chain of custody are listed (with
their SHA-256) in ``files``. An outsider recomputes them from the parsed manifest with
any JCS implementation plus one rule of ours: an integer outside ±(2^53 − 1) is written
as ``{"$bigint": "<digits>"}`` (``canonical.dumps``; docs/export.md "The digests,
exactly"; ``tests/gocheck/jcs.go`` does it in Go).
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
    """The digest of a manifest list (records, files or raw batches)."""
    h = hashlib.sha256()
    for r in records:
        h.update(record_line(r))
    return h.hexdigest()


# The manifest's members that are not its head: the three lists, and the export's leaf
# (which cannot name itself).
NOT_HEAD = frozenset({"export", "files", "raw_batches", "records"})


def head_digest(head: Mapping[str, Any]) -> str:
    """``head_sha256``: of the manifest without :data:`NOT_HEAD` (pass the whole manifest
    or the head alone)."""
    return hashlib.sha256(
        canonical.dumps({k: v for k, v in head.items() if k not in NOT_HEAD})
    ).hexdigest()


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
