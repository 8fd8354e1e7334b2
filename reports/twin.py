"""The machine-readable twin: the report's numbers as canonical JSON bytes (pure code).

RFC 8785 (JCS) canonical JSON, UTF-8: sorted keys, no insignificant whitespace. The twin
holds integers and strings only (a float raises ``TwinError``), so there is no number
formatting to disagree about. It carries no generation time and no report id: the same
facts give byte-identical twins, and the PDF's pages print ``twin_sha256`` of these bytes
together with the checkpoint (tree size, root hash) the report covers.

Schema ``wa-archiver.report-twin/1`` (documented in ``docs/reports.md``)::

    {"schema", "regulation", "scope", "checkpoint": {"size", "root_hash"}, "policies",
     "inventory", "retention", "holds", "disposals", "erasures", "consent", "access",
     "integrity", "completeness", "finding_counts", "regulation_items", "findings"}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import rfc8785

from reports.compute import Report
from reports.errors import ReportsError
from reports.labels import TWIN_FILENAME as TWIN_FILENAME  # one spelling, shared with pdf

TWIN_SCHEMA = "wa-archiver.report-twin/1"
TWIN_MEDIA_TYPE = "application/json"


class TwinError(ReportsError):
    code = "report_twin_invalid"


def twin_dict(report: Report) -> dict[str, Any]:
    return {"schema": TWIN_SCHEMA, **report.to_dict()}


def twin_bytes(report: Report) -> bytes:
    """Canonical bytes of the report's twin. Raises ``TwinError`` on a non-integer number."""
    data = twin_dict(report)
    _check(data, "$")
    out: bytes = rfc8785.dumps(data)
    return out


def twin_sha256(data: bytes) -> str:
    """Lowercase hex SHA-256 of the twin's bytes, as printed on every page."""
    return hashlib.sha256(data).hexdigest()


def load_twin(data: bytes) -> dict[str, Any]:
    """Parse twin bytes (for verification); raises ``TwinError`` when they are not a twin
    or not in canonical form (a re-serialised twin would hash differently)."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TwinError(f"twin is not UTF-8 JSON: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("schema") != TWIN_SCHEMA:
        raise TwinError(f"twin schema must be {TWIN_SCHEMA!r}")
    _check(parsed, "$")
    if rfc8785.dumps(parsed) != data:
        raise TwinError("twin bytes are not canonical (RFC 8785)")
    return parsed


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return
    if isinstance(value, float):
        raise TwinError(f"{path}: floats are not allowed in the twin")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TwinError(f"{path}: keys must be strings")
            _check(v, f"{path}.{k}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    raise TwinError(f"{path}: {type(value).__name__} is not JSON")
