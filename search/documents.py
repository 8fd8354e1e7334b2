"""The index document of one message, and its validation.

A document is a plain JSON-able dict. Both adapters call ``validate`` before writing, so
they accept and reject exactly the same documents (ES itself maps with ``dynamic: strict``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from search.errors import InvalidDocument
from search.mapping import MESSAGE_MAPPING
from search.query import normalize_phone, normalize_username, parse_date_bound

FIELDS: frozenset[str] = frozenset(MESSAGE_MAPPING["properties"])
REQUIRED = ("id", "ts")
ORIGINS = ("customer", "business_app", "business_api", "history")
DIRECTIONS = ("inbound", "outbound")
# The UTC form documents nearly always carry: parsed by the C ``fromisoformat`` instead of
# the general date parser (same result, a fifth of the cost per document).
_UTC_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")
_DATES = ("ts", "captured_at", "retain_until", "revoked_at", "edited_at")
_LOWER = ("type", "origin", "direction", "status", "kind", "event", "pricing_category")
_PHONES = ("business_number", "from", "to", "contact")
# Fields both adapters can filter and facet on (the SQLite adapter keeps them as columns).
# ``phone_number_id`` is the business number's identity (scopes, holds, ``number:``);
# ``business_number`` is its display number, an attribute that can change.
FILTER_COLUMNS = (
    "phone_number_id", "business_number", "from", "to", "type", "origin", "direction",
    "status", "conversation", "contact", "contact_user_id", "contact_username", "policy", "kind",
    "event", "pricing_category",
)  # fmt: skip
# Lists of strings: filterable (the SQLite adapter keeps each as a JSON array column).
LIST_FIELDS = ("holds", "error_codes")
# Lists of strings kept for display only.
_DISPLAY_LISTS = ("sources",)


def _to_utc_iso(value: Any, field: str) -> str:
    if isinstance(value, bool):
        raise InvalidDocument(f"field '{field}' must be an ISO 8601 time")
    if isinstance(value, int | float):
        instant = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, str):
        if _UTC_ISO.fullmatch(value):
            try:
                return datetime.fromisoformat(value).isoformat().replace("+00:00", "Z")
            except ValueError:
                raise InvalidDocument(f"field '{field}' must be an ISO 8601 time") from None
        try:
            instant, _ = parse_date_bound(value)
        except ValueError:
            raise InvalidDocument(f"field '{field}' must be an ISO 8601 time") from None
    else:
        raise InvalidDocument(f"field '{field}' must be an ISO 8601 time")
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def validate(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Return a normalised copy of ``doc``: times as UTC ISO 8601 (``...Z``), phone numbers
    as digits, closed vocabularies lower-cased, ``holds`` as a list.

    Usernames lose their leading ``@``; ``holds``, ``error_codes`` and ``sources`` are lists.

    Raises ``InvalidDocument`` on a missing id/ts, an unknown field or a bad value.
    """
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise InvalidDocument(f"unknown document field(s): {', '.join(unknown)}")
    for name in REQUIRED:
        if not doc.get(name):
            raise InvalidDocument(f"document field '{name}' is required")
    out = dict(doc)
    out["id"] = str(doc["id"])
    for name in _DATES:
        if out.get(name) is not None:
            out[name] = _to_utc_iso(out[name], name)
    for name in _LOWER:
        if isinstance(out.get(name), str):
            out[name] = out[name].lower()
    for name in _PHONES:
        if isinstance(out.get(name), str):
            out[name] = normalize_phone(out[name])
    if isinstance(out.get("contact_username"), str):
        # People type a username with or without its "@"; it is kept without.
        out["contact_username"] = normalize_username(out["contact_username"])
    for name in (*LIST_FIELDS, *_DISPLAY_LISTS):
        values = out.get(name)
        if values is None:
            continue
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InvalidDocument(f"field '{name}' must be a list of strings")
        out[name] = values
    for name in FILTER_COLUMNS:
        if out.get(name) is not None and not isinstance(out[name], str):
            raise InvalidDocument(f"field '{name}' must be a string")
    if out.get("text") is not None and not isinstance(out["text"], str):
        raise InvalidDocument("field 'text' must be a string")
    return out


def join_text(*parts: str | None) -> str:
    """All searchable text of a message in one field (body, caption, file name, ...)."""
    return "\n".join(p for p in parts if p)
