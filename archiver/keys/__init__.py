"""Data keys per subject and per raw capture, envelope encryption, crypto-shredding.

Public API (see docs/keys.md)::

    envelope.encrypt(key: DataKey, plaintext, aad=b"") -> bytes
    envelope.decrypt(key: DataKey, blob, aad=b"") -> bytes
    envelope.envelope_key_id(blob) -> str
    LocalKek(key32) / LocalKek.from_settings(b64=..., path=...)   (KeyEncryptionKey)
    KeyStore(state, kek, old_keks=(), clock=None)
"""

from archiver.keys.envelope import (
    DataKey,
    KeyEncryptionKey,
    LocalKek,
    decrypt,
    encrypt,
    envelope_key_id,
    new_data_key,
)
from archiver.keys.errors import (
    DecryptionFailed,
    KekError,
    KeyNotFound,
    KeyProtected,
    KeysError,
    KeyShredded,
    MalformedEnvelope,
)
from archiver.keys.store import Event, KeyEventKind, KeyStore

__all__ = [
    "DataKey",
    "DecryptionFailed",
    "Event",
    "KekError",
    "KeyEncryptionKey",
    "KeyEventKind",
    "KeyNotFound",
    "KeyProtected",
    "KeyShredded",
    "KeyStore",
    "KeysError",
    "LocalKek",
    "MalformedEnvelope",
    "decrypt",
    "encrypt",
    "envelope_key_id",
    "new_data_key",
]
