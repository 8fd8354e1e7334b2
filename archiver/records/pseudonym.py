"""Pseudonyms: keyed HMAC-SHA256 of an identity, never the identity itself.

Object keys, record ids, log entries and anything else immutable use these, so that
nothing written under retention names a person (DESIGN principle 5). The key lives in
settings (``ARCHIVER_PSEUDONYM_KEY``); without it a pseudonym cannot be linked back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_setting(cls, value: str) -> Pseudonymizer:
        """Accept hex (64 chars) or any other string as raw bytes."""
        try:
            key = bytes.fromhex(value)
        except ValueError:
            key = value.encode()
        return cls(key)

    def _mac(self, domain: str, *parts: str) -> bytes:
        message = "\x00".join((domain, *parts)).encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def token(self, prefix: str, domain: str, *parts: str, length: int = 20) -> str:
        """``prefix`` + lowercase base32 (no padding) of the first ``length`` MAC bytes."""
        raw = self._mac(domain, *parts)[:length]
        return prefix + base64.b32encode(raw).decode().rstrip("=").lower()

    def subject(self, business: str, alias: str) -> str:
        return self.token("s_", "subject", business, alias)

    def alias(self, business: str, alias: str) -> str:
        return self.token("a_", "alias", business, alias)

    def record_id(self, business: str, dedup_key: str, variant: str = "") -> str:
        return self.token("r_", "record", business, dedup_key, variant)

    def conversation(self, business: str, party: str) -> str:
        return self.token("c_", "conversation", business, party)

    def message_ref(self, business: str, message_id: str) -> str:
        """Pseudonym of a wamid (wamids embed phone numbers)."""
        return self.token("m_", "message", business, message_id)

    def business(self, phone_number_id: str) -> str:
        """Pseudonym of a business number (``phone_number_id``): what log entries name
        instead of the digits (the media worker's blob owner when no subject is known)."""
        return self.token("b_", "business", phone_number_id)

    def content_mac(self, content_hash: str) -> str:
        return self.token("h_", "content", content_hash, length=16)
