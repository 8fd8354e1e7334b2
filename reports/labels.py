"""What a report's pages print for machines to read back (shared by templates and verify).

The pages print, as plain text, each label followed by an optional colon and the value:

    Twin SHA-256 <64 hex digits>             (or "Twin SHA-256: <hex>")
    Checkpoint tree size <decimal>
    Checkpoint root <64 hex digits>

Page headers/footers on every page are the intended place (CSS paged-media margin boxes,
e.g. ``content: "Twin SHA-256 " string(twin)``). ``reports.verify`` extracts the text of
the signed revision's pages and requires at least one occurrence of each, every occurrence
equal to the twin's values. Text extraction may drop or add single spaces and line breaks
(a long hex string can wrap), so the patterns below accept one optional whitespace
character between the label's words and between hex digits; the words themselves must be
spelled exactly as these constants say.
"""

from __future__ import annotations

import re

TWIN_SHA256_LABEL = "Twin SHA-256"
CHECKPOINT_SIZE_LABEL = "Checkpoint tree size"
CHECKPOINT_ROOT_LABEL = "Checkpoint root"

# The attachment's file name inside the PDF (PDF/A-3 associated file, /AFRelationship /Data).
TWIN_FILENAME = "report-twin.json"


def twin_hash_line(sha256_hex: str) -> str:
    """``Twin SHA-256: <hex>``, the line a page prints for the twin's hash."""
    return f"{TWIN_SHA256_LABEL}: {sha256_hex}"


def checkpoint_line(tree_size: int, root_hex: str) -> str:
    """``Checkpoint tree size: N · Checkpoint root: <hex>``, the checkpoint the report covers."""
    return f"{CHECKPOINT_SIZE_LABEL}: {tree_size} · {CHECKPOINT_ROOT_LABEL}: {root_hex}"


def _label(text: str) -> str:
    return r"\s?".join(re.escape(word) for word in text.split()) + r"\s?:?\s?"


# 64 hex digits, one whitespace allowed between digits (wrapping). No guard against a 65th
# digit: extraction can glue the next word ("…9fCheckpoint") to the hash.
_HEX64 = r"((?:[0-9a-fA-F]\s?){63}[0-9a-fA-F])"

# Applied to page text whose whitespace runs were collapsed to one space.
TWIN_SHA256_PATTERN = re.compile(_label(TWIN_SHA256_LABEL) + _HEX64)
CHECKPOINT_SIZE_PATTERN = re.compile(_label(CHECKPOINT_SIZE_LABEL) + r"([0-9]+)(?![0-9])")
CHECKPOINT_ROOT_PATTERN = re.compile(_label(CHECKPOINT_ROOT_LABEL) + _HEX64)


def find_printed(text: str) -> tuple[set[str], set[int], set[str]]:
    """The twin hashes, checkpoint sizes and checkpoint roots printed in ``text`` (hex
    lowercased, internal whitespace removed)."""
    flat = " ".join(text.split())

    def hexes(pattern: re.Pattern[str]) -> set[str]:
        return {"".join(m.split()).lower() for m in pattern.findall(flat)}

    sizes = {int(m) for m in CHECKPOINT_SIZE_PATTERN.findall(flat)}
    return hexes(TWIN_SHA256_PATTERN), sizes, hexes(CHECKPOINT_ROOT_PATTERN)
