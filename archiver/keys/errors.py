"""Key errors.

    ArchiverError
    ├── KeysError                  root of this package (``key_error``)
    │   ├── KeyNotFound           no such key id / subject -> 404
    │   ├── KeyShredded           the key was destroyed (erasure) -> 410
    │   ├── KeyProtected          refused: subject under obligation or hold -> 409
    │   ├── DecryptionFailed      wrong key, wrong AAD, or tampered bytes -> 422
    │   └── MalformedEnvelope     not an envelope we wrote -> 422
    └── ConfigError
        └── KekError              KEK missing, not 32 bytes, or unknown kek id
"""

from __future__ import annotations

from archiver.errors import ArchiverError, ConfigError


class KeysError(ArchiverError):
    code = "key_error"
    status = 500


class KeyNotFound(KeysError):
    code = "key_not_found"
    status = 404


class KeyShredded(KeysError):
    """The data key was destroyed: the content it protected is unreadable for good."""

    code = "key_shredded"
    status = 410


class KeyProtected(KeysError):
    code = "key_protected"
    status = 409


class DecryptionFailed(KeysError):
    code = "decryption_failed"
    status = 422


class MalformedEnvelope(KeysError):
    code = "malformed_envelope"
    status = 422


class KekError(ConfigError):
    code = "kek_invalid"
