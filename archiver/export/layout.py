"""Every path inside an export package, in one place (pure)."""

from __future__ import annotations

import re
from datetime import date

MANIFEST = "manifest.json"
LOADFILE = "loadfile.dat"
CUSTODY = "chain-of-custody.json"
README = "README.txt"
FORMAT = "wa-archiver-export/1"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def safe_name(name: str, limit: int = 100) -> str:
    """A file name reduced to a portable alphabet (never empty, never a dot file)."""
    cleaned = _UNSAFE.sub("_", name).strip("._")[:limit]
    return cleaned or "file"


def record_native(record_id: str) -> str:
    return f"natives/records/{record_id}.json"


def record_text(record_id: str) -> str:
    return f"text/{record_id}.txt"


def attachment_native(record_id: str, attachment_id: str, name: str) -> str:
    return f"natives/attachments/{record_id}/{attachment_id}_{safe_name(name)}"


def rsmf_attachment(attachment_id: str, name: str) -> str:
    """The file name inside a slice's rsmf.zip (RSMF attachment ids are file names)."""
    return f"{attachment_id}_{safe_name(name)}"


def raw_batch(batch_name: str) -> str:
    return f"natives/raw/{safe_name(batch_name, 200)}.bin"


def raw_slot(batch_name: str, index: int) -> str:
    return f"natives/raw/{safe_name(batch_name, 200)}.slot-{index}.json"


def rsmf_slice(conversation_id: str, day: date, part: int) -> str:
    return f"rsmf/{conversation_id}/{day.isoformat()}_{part:03d}.rsmf"


def document(name: str) -> str:
    """A readable document beside the formats (a subject access request's JSON)."""
    return f"documents/{safe_name(name)}"


def transcript(conversation_id: str) -> str:
    return f"transcripts/{conversation_id}.pdf"
