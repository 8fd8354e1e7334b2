"""Envelope encryption: AES-256-GCM under a data key, data keys wrapped by a KEK.

Envelope layout (version 1), all of it authenticated::

    0x01 | len(key_id) (1 byte) | key_id (ASCII) | nonce (12 bytes) | ciphertext || tag (16)

The header (version, key id) is prepended to the caller's AAD before GCM, so changing
the key id or the version breaks the tag. Nonces are random 96-bit values
(NIST SP 800-38D §8.2.2); one data key encrypts far fewer than 2^32 messages.

Data keys are wrapped with AES Key Wrap (RFC 3394) under the key-encryption key.
``KeyEncryptionKey`` is a Protocol so a KMS-backed KEK can replace ``LocalKek``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from archiver.keys.errors import DecryptionFailed, KekError, MalformedEnvelope

VERSION = 1
NONCE_LEN = 12
KEY_LEN = 32


@dataclass(frozen=True, slots=True)
class DataKey:
    """An AES-256 data key and its id. ``secret`` is left out of repr on purpose."""

    key_id: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_LEN:
            raise ValueError("a data key is 32 bytes (AES-256)")
        if not self.key_id.isascii() or not 0 < len(self.key_id) < 256:
            raise ValueError("a key id is 1..255 ASCII characters")


def new_data_key(key_id: str | None = None) -> DataKey:
    return DataKey(key_id or os.urandom(16).hex(), AESGCM.generate_key(bit_length=256))


def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([VERSION, len(kid)]) + kid


def encrypt(key: DataKey, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Seal ``plaintext`` under ``key``; ``aad`` (e.g. the record id) is bound, not stored."""
    header = _header(key.key_id)
    nonce = os.urandom(NONCE_LEN)
    return header + nonce + AESGCM(key.secret).encrypt(nonce, plaintext, header + aad)


def envelope_key_id(blob: bytes) -> str:
    """The key id an envelope names (to fetch its key). Raises MalformedEnvelope."""
    if len(blob) < 2 or blob[0] != VERSION:
        raise MalformedEnvelope("not a version-1 envelope")
    n = blob[1]
    if n == 0 or len(blob) < 2 + n + NONCE_LEN + 16:
        raise MalformedEnvelope("envelope too short")
    try:
        return blob[2 : 2 + n].decode("ascii")
    except UnicodeDecodeError as exc:
        raise MalformedEnvelope("key id is not ASCII") from exc


def decrypt(key: DataKey, blob: bytes, aad: bytes = b"") -> bytes:
    """Open an envelope. Raises MalformedEnvelope, DecryptionFailed (wrong key, AAD, bytes)."""
    kid = envelope_key_id(blob)
    if kid != key.key_id:
        raise DecryptionFailed(f"envelope is sealed under key {kid}, not {key.key_id}")
    header_len = 2 + blob[1]
    nonce = blob[header_len : header_len + NONCE_LEN]
    try:
        return AESGCM(key.secret).decrypt(nonce, blob[header_len + NONCE_LEN :],
                                          blob[:header_len] + aad)
    except InvalidTag as exc:
        raise DecryptionFailed("authentication failed: wrong key, wrong AAD or altered") from exc


class KeyEncryptionKey(Protocol):
    """Wraps data keys. ``kek_id`` names the KEK in every stored wrap (for rotation)."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, data_key: bytes) -> bytes: ...

    def unwrap(self, blob: bytes) -> bytes:
        """Raise DecryptionFailed when ``blob`` was not wrapped by this KEK."""
        ...


class LocalKek:
    """A 32-byte KEK held in memory; AES Key Wrap (RFC 3394) via ``cryptography``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LEN:
            raise KekError("the key-encryption key must be 32 bytes")
        self._key = key
        # A fingerprint names the KEK without revealing it (SHA-256 of a random 256-bit key).
        self._id = "local:" + hashlib.sha256(b"wa-archiver kek id\x00" + key).hexdigest()[:16]

    @property
    def kek_id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return f"LocalKek({self._id})"

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._key, data_key)

    def unwrap(self, blob: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, blob)
        except (InvalidUnwrap, ValueError) as exc:
            raise DecryptionFailed(f"cannot unwrap under {self._id}") from exc

    @classmethod
    def generate(cls) -> LocalKek:
        return cls(os.urandom(KEY_LEN))

    @classmethod
    def from_b64(cls, text: str) -> LocalKek:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KekError("the KEK is not valid base64") from exc
        return cls(raw)

    @classmethod
    def from_settings(cls, *, b64: str | None = None, path: Path | None = None) -> LocalKek:
        """From a base64 value (env var) or a file holding base64. Raises KekError."""
        if b64:
            return cls.from_b64(b64)
        if path is not None:
            try:
                return cls.from_b64(Path(path).read_text(encoding="ascii"))
            except OSError as exc:
                raise KekError(f"cannot read KEK file {path}: {exc}") from exc
        raise KekError("no key-encryption key configured (base64 value or file)")
