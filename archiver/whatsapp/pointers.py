"""JSON-pointer bookkeeping for the webhook parser (pure).

Every leaf of a body has an RFC 6901 pointer; ``Take`` reads typed values and records
which pointers it consumed, so the parser can show that each leaf is either consumed
or kept in some event's ``unknown``. Also the RFC 8785 canonical bytes (and their
SHA-256) behind ``content_hash`` and dedup keys, and Meta's epoch timestamps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import rfc8785

from archiver.whatsapp.events import ErrorInfo


def esc(key: str) -> str:
    """RFC 6901 §4 reference-token escaping."""
    return key.replace("~", "~0").replace("/", "~1")


def leaves(obj: Any, ptr: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf (scalar, or empty container) of a JSON value with its pointer."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from leaves(v, f"{ptr}/{esc(str(k))}")
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from leaves(v, f"{ptr}/{i}")
    else:
        yield ptr, obj


def covered(ptr: str, pointers: frozenset[str] | set[str]) -> bool:
    """True if ``ptr`` or one of its ancestors is in ``pointers``."""
    if ptr in pointers or "" in pointers:
        return True
    cut = ptr.rfind("/")
    while cut > 0:
        ptr = ptr[:cut]
        if ptr in pointers:
            return True
        cut = ptr.rfind("/")
    return False


def canonical(obj: Any) -> bytes:
    """RFC 8785 bytes; values outside I-JSON (huge ints, NaN) fall back to sorted JSON."""
    try:
        return bytes(rfc8785.dumps(obj))
    except (ValueError, TypeError):
        return json.dumps(
            obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        ).encode("utf-8", "surrogatepass")


def canonical_sha256(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def to_datetime(value: Any) -> datetime | None:
    """Meta timestamps: epoch seconds as int or digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


class Take:
    """Reads values from a JSON object and remembers which pointers were consumed."""

    def __init__(self) -> None:
        self.consumed: set[str] = set()

    def string(self, obj: Any, ptr: str, key: str) -> str | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return str(v)
        return None

    def num(self, obj: Any, ptr: str, key: str) -> float | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return float(v)
        return None

    def integer(self, obj: Any, ptr: str, key: str) -> int | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, str) and v.isdigit():
                v = int(v)
            if isinstance(v, int) and not isinstance(v, bool):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return v
        return None

    def boolean(self, obj: Any, ptr: str, key: str) -> bool | None:
        if isinstance(obj, dict) and isinstance(obj.get(key), bool):
            self.consumed.add(f"{ptr}/{esc(key)}")
            return bool(obj[key])
        return None

    def time(self, obj: Any, ptr: str, key: str) -> datetime | None:
        if isinstance(obj, dict):
            dt = to_datetime(obj.get(key))
            if dt is not None:
                self.consumed.add(f"{ptr}/{esc(key)}")
            return dt
        return None

    def tree(self, obj: Any, ptr: str, key: str, kind: type = dict) -> Any:
        """Consume a whole sub-object (an open vendor shape kept as typed JSON)."""
        if isinstance(obj, dict) and isinstance(obj.get(key), kind):
            self.consumed.add(f"{ptr}/{esc(key)}")
            return obj[key]
        return None

    def errors(self, obj: Any, ptr: str, key: str = "errors") -> tuple[ErrorInfo, ...]:
        items = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(items, list):
            return ()
        out = []
        for i, e in enumerate(items):
            if isinstance(e, dict):
                p = f"{ptr}/{esc(key)}/{i}"
                out.append(
                    ErrorInfo(
                        code=self.integer(e, p, "code"),
                        title=self.string(e, p, "title"),
                        message=self.string(e, p, "message"),
                        details=self.string(e.get("error_data"), f"{p}/error_data", "details"),
                        href=self.string(e, p, "href"),
                    )
                )
        return tuple(out)


__all__ = ["Take", "canonical", "canonical_sha256", "covered", "esc", "leaves", "to_datetime"]
