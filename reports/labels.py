"""What a report's pages print for machines to read back (shared by rendering and verify).

The HTML templates print, in plain text on the pages (a footer on every page is best):

    Twin SHA-256: <64 lowercase hex digits>
    Log checkpoint: tree size <decimal>, root <64 lowercase hex digits>

``reports.verify`` extracts the page text of the signed revision, removes every whitespace
character (text extraction and line wrapping may split a long hex string) and matches the
compact forms below, so the labels must be spelled exactly as these constants say.
"""

from __future__ import annotations

import re

TWIN_SHA256_LABEL = "Twin SHA-256:"
CHECKPOINT_LABEL = "Log checkpoint:"

# The attachment's file name inside the PDF (PDF/A-3 associated file, /AFRelationship /Data).
TWIN_FILENAME = "report-twin.json"


def twin_hash_line(sha256_hex: str) -> str:
    """The line a page prints for the twin's hash, e.g. ``Twin SHA-256: 9f86…``."""
    return f"{TWIN_SHA256_LABEL} {sha256_hex}"


def checkpoint_line(tree_size: int, root_hex: str) -> str:
    """The line a page prints for the checkpoint the report covers."""
    return f"{CHECKPOINT_LABEL} tree size {tree_size}, root {root_hex}"


def _compact(label: str) -> str:
    return re.escape("".join(label.split()))


# Patterns over page text with ALL whitespace removed.
TWIN_SHA256_PATTERN = re.compile(_compact(TWIN_SHA256_LABEL) + r"([0-9a-fA-F]{64})")
CHECKPOINT_PATTERN = re.compile(
    _compact(CHECKPOINT_LABEL) + r"treesize([0-9]+),root([0-9a-fA-F]{64})"
)
