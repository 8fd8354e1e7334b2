"""Key errors.

    ArchiverError
    ├── KeysError                  root of this package (``key_error``)
    │   ├── KeyNotFound           no such key id / subject
    │   ├── KeyShredded           the key was destroyed (erasure)
    │   ├── KeyProtected          refused: subject under obligation or hold
    │   ├── DecryptionFailed      wrong key, wrong AAD, or tampered bytes
    │   └── MalformedEnvelope     not an envelope we wrote
    └── ConfigError
        └── KekError              KEK missing, not 32 bytes, or unknown kek id
"""

from __future__ import annotations

from archiver.errors import ArchiverError, ConfigError


class KeysError(ArchiverError):
    code = "key_error"


class KeyNotFound(KeysError):
    code = "key_not_found"


class KeyShredded(KeysError):
    """The data key was destroyed: the content it protected is unreadable for good."""

    code = "key_shredded"


class KeyProtected(KeysError):
    code = "key_protected"


class DecryptionFailed(KeysError):
    code = "decryption_failed"


class MalformedEnvelope(KeysError):
    code = "malformed_envelope"


class KekError(ConfigError):
    code = "kek_invalid"
