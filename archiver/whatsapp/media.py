"""Pure rules for WhatsApp media: hash and size normalisation, the 7-day life.

No I/O here; the Graph API client (``archiver.whatsapp.graph``) and the durable
retry scheduler (the ingest worker) both lean on these.

Meta "Media" guide / "Media API" reference (v23.0), see the fixtures README §3:

* ``sha256`` arrives as lowercase hex in some examples (history media) and as
  base64 in others (message webhooks) — we accept both and keep lowercase hex.
* ``file_size`` arrives as a string (API reference) or an integer (pywa docstring).
* Media ids from webhooks can be downloaded for 7 days; the URL from
  ``GET /<MEDIA_ID>`` lives 5 minutes.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timedelta

MEDIA_LIFETIME = timedelta(days=7)
"""Meta keeps webhook media ids downloadable for 7 days (Media guide)."""

MEDIA_URL_LIFETIME = timedelta(minutes=5)
"""A URL from ``GET /<MEDIA_ID>`` is valid for 5 minutes; fetch a fresh one after."""

DEFAULT_MAX_MEDIA_BYTES = 100 * 1024 * 1024
"""Largest media Meta accepts (documents, 100 MB); anything bigger is refused."""

_MEDIA_ID = re.compile(r"[0-9]{1,64}")
MEDIA_ID_INVALID = "media_id_invalid"
"""Reason code of a media id that is not Meta's shape (never fetched; flagged)."""

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_B64_44 = re.compile(r"[A-Za-z0-9+/]{43}=")


def is_media_id(value: object) -> bool:
    """Meta media ids are decimal digits (Media API: ``GET /<MEDIA_ID>``). Anything else
    (a path, a URL, a placeholder) must never reach a Graph URL or a fetchable job."""
    return isinstance(value, str) and _MEDIA_ID.fullmatch(value) is not None


def normalise_sha256(value: str) -> str:
    """Return a SHA-256 digest given as 64 hex chars or 44-char base64, as lowercase hex.

    Raises ``ValueError`` for anything else (wrong length, bad alphabet, a digest
    that does not decode to exactly 32 bytes). Detection is by shape: 64 hex
    characters can never be valid 44-character base64 and vice versa.
    """
    text = value.strip()
    if _HEX64.fullmatch(text):
        return text.lower()
    # Only the two shapes Meta uses: a looser rule (unpadded or URL-safe base64)
    # would read 43-character placeholders such as pywa's as a digest.
    if not _B64_44.fullmatch(text):
        raise ValueError(f"not a SHA-256 digest in hex or base64: {value!r}")
    raw = _b64decode(text)
    if len(raw) != 32:
        raise ValueError(f"base64 digest decodes to {len(raw)} bytes, not 32: {value!r}")
    return raw.hex()


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 digest: {text!r}") from exc


def parse_file_size(value: object) -> int | None:
    """``file_size`` as Meta sends it (``"303833"`` or ``61901``) → int; absent → None.

    Raises ``ValueError`` for negative numbers, booleans, floats with a fraction or
    non-numeric strings.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"file_size is a boolean: {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        size = int(value.strip())
    else:
        raise ValueError(f"file_size is not a whole number: {value!r}")
    if size < 0:
        raise ValueError(f"file_size is negative: {value!r}")
    return size


def _require_aware(name: str, when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {when!r}")


def media_deadline(first_seen: datetime) -> datetime:
    """Last moment Meta still serves a media id first seen at ``first_seen`` (+7 days)."""
    _require_aware("first_seen", first_seen)
    return first_seen + MEDIA_LIFETIME


# Durable retry schedule (the worker's, not the in-process tenacity one): 1 min,
# 2, 4, … capped at 6 h, so ~30 attempts fit in the 7 days without hammering Meta.
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=6)
MAX_DURABLE_ATTEMPTS = 40


def should_retry(
    now: datetime, first_seen: datetime, attempts: int, *, max_attempts: int = MAX_DURABLE_ATTEMPTS
) -> bool:
    """Whether a failed media download deserves another durable attempt.

    ``attempts`` counts the attempts already made. False once the 7-day life is
    over or the attempt budget is spent: the caller then flags the message as
    "media never arrived" instead of trying forever.
    """
    _require_aware("now", now)
    if attempts < 0:
        raise ValueError("attempts must be >= 0")
    return attempts < max_attempts and now < media_deadline(first_seen)


def next_retry_at(now: datetime, first_seen: datetime, attempts: int) -> datetime | None:
    """When to try again after ``attempts`` failures, or None if ``should_retry`` says no.

    Exponential (1 min · 2^(attempts-1), capped at 6 h), never past the deadline:
    the last try is placed just before the media id expires.
    """
    if not should_retry(now, first_seen, attempts):
        return None
    exponent = max(attempts - 1, 0)
    delay = RETRY_CAP if exponent >= 20 else min(RETRY_BASE * (2**exponent), RETRY_CAP)
    last_chance = media_deadline(first_seen) - timedelta(seconds=1)
    return max(now, min(now + delay, last_chance))
