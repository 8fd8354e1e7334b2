"""RFC 8785 (JCS) canonical JSON, fast for the shapes we write (pure).

``rfc8785.dumps`` is pure Python and was the largest CPU cost of capture (80 % of sealing
a 64-delivery batch: 3.5 ms holding the GIL). For JSON values without floats and with
keys inside the Basic Multilingual Plane, the standard library's ``json.dumps`` with
sorted keys, no spaces and UTF-8 output produces the same bytes as RFC 8785: both escape
exactly ``"``, ``\\`` and U+0000..U+001F (short forms where defined, else ``\\u00xx`` in
lower case), integers print alike, and code-point order equals UTF-16 order inside the
BMP. Anything else (a float, a key outside the BMP) goes to ``rfc8785``. A property test
pins the equivalence.

Large integers (docs/formats.md "Large integers"): RFC 8785 refuses integers outside
I-JSON's exact range, ±(2^53 − 1), and Meta does send some (template ids). Refusing them
stalled a whole capture batch, and a float would lose digits, so an integer outside the
range is written exactly as the object ``{"$bigint": "<decimal digits>"}``. Every other
value is canonicalised exactly as RFC 8785 says.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_MAX_SAFE = 2**53  # RFC 8785 / I-JSON: larger integers are not interoperable
BIGINT = "$bigint"  # the marker key of an exact large integer (docs/formats.md)


def _bmp_key(key: Any) -> bool:
    # ``isascii`` is a C-speed test that settles almost every key.
    return isinstance(key, str) and (key.isascii() or all(ord(c) < 0x10000 for c in key))


def _simple(value: Any) -> bool:
    # Iterative, exact-type fast paths first: this walks every value of every record.
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is dict:
            for k, v in item.items():
                if not (type(k) is str and k.isascii()) and not _bmp_key(k):
                    return False
                push(v)
            continue
        if kind is list or kind is tuple:
            stack.extend(item)
            continue
        if kind is int:
            if not -_MAX_SAFE < item < _MAX_SAFE:
                return False
            continue
        if isinstance(item, bool | str):
            continue
        if isinstance(item, int) and not isinstance(item, float):
            if not -_MAX_SAFE < item < _MAX_SAFE:
                return False
            continue
        if isinstance(item, dict):
            if not all(_bmp_key(k) for k in item):
                return False
            stack.extend(item.values())
            continue
        if isinstance(item, list | tuple):
            stack.extend(item)
            continue
        return False
    return True


def exact(value: Any) -> Any:
    """``value`` with every integer outside ±(2^53 − 1) as ``{"$bigint": "<digits>"}``."""
    if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value if -_MAX_SAFE < value < _MAX_SAFE else {BIGINT: str(value)}
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [exact(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """Canonical bytes of ``value`` (RFC 8785, large integers as above). Raises ValueError
    (``rfc8785.CanonicalizationError``) for what JSON cannot hold (NaN, infinities) and
    UnicodeEncodeError for a lone surrogate."""
    if _simple(value):
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    return rfc8785.dumps(exact(value))
