"""``X-Hub-Signature-256`` verification for WhatsApp webhook POSTs (pure, no I/O).

Meta "Create a webhook endpoint": the header is ``sha256=<hex>`` where ``<hex>`` is
the lowercase hex HMAC-SHA256 of the raw POST body keyed by the App Secret. We HMAC the
bytes exactly as received (never a re-serialisation: fixtures README §2, vectors 3/4).

Decisions:

* Only ``sha256=`` is accepted; a ``sha1=`` (legacy ``X-Hub-Signature``) header is
  ``malformed``, so a downgrade can never pass.
* Hex is accepted in either case: case carries no information, Meta sends lowercase,
  and refusing uppercase would only turn a proxy's normalisation into a false 401.
* Several secrets may be valid at once (rotation, several apps/WABAs); all are tried in
  constant time each, and the index of the first match is returned.

Raises :class:`SignatureError` (an :class:`~archiver.errors.AuthError`) with
``reason`` in ``{"missing", "malformed", "mismatch"}``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Literal

from archiver.errors import AuthError

Reason = Literal["missing", "malformed", "mismatch"]

_PREFIX = "sha256="
_HEX = frozenset("0123456789abcdefABCDEF")


class SignatureError(AuthError):
    """The webhook signature is absent, unreadable or wrong. ``reason`` is machine-readable."""

    code = "signature_invalid"

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"webhook signature {reason}", details={"reason": reason})
        self.reason: Reason = reason


def verify_signature(body: bytes, header: str | None, secrets: Sequence[bytes]) -> int:
    """Check ``header`` against HMAC-SHA256(secret, body) for each secret.

    Returns the index in ``secrets`` of the secret that matched.
    Raises ``SignatureError("missing")`` for an absent/empty header,
    ``("malformed")`` for a wrong scheme or non-64-hex digest, ``("mismatch")`` otherwise
    (also when ``secrets`` is empty).
    """
    if header is None or not header.strip():
        raise SignatureError("missing")
    value = header.strip()
    if not value.startswith(_PREFIX):
        raise SignatureError("malformed")
    digest = value[len(_PREFIX) :]
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise SignatureError("malformed")
    given = bytes.fromhex(digest)
    matched = -1
    # Every secret is tried (no early exit) so timing does not reveal which one matched.
    for index, secret in enumerate(secrets):
        expected = hmac.new(secret, body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, given) and matched < 0:
            matched = index
    if matched < 0:
        raise SignatureError("mismatch")
    return matched
