"""The root of every error the service raises on purpose.

Tree (each package adds its own subclasses next to its code)::

    ArchiverError                      code: "internal"
    ├── ConfigError                    bad settings or policy files (start-up)
    ├── StoreError                     archiver.store.errors
    │   ├── StoreUnavailable           backend unreachable
    │   ├── ObjectExists               write-once violated
    │   ├── ObjectNotFound
    │   ├── ObjectLocked               retention / legal hold refused the change
    │   ├── RetentionShortening        asked to shorten a retain-until
    │   ├── PreconditionFailed         compare-and-swap lost (working state)
    │   └── BucketMisconfigured        bucket lacks Object Lock / versioning (start-up)
    ├── IndexError_                    search.errors (kept in search/, mapped at the edge)
    ├── AuthError                      no valid credential
    ├── Forbidden                      a valid credential that may not do this
    ├── InvalidInput                   the caller's input is refused (named by ``code``)
    ├── NotFound
    ├── Conflict                       the state refuses the change (a hold, a pending review)
    └── Unavailable                    a dependency cannot serve now

Every error carries a stable, machine-readable ``code`` and nothing about transport:
the API's one table (``archiver.api.errors.HTTP_STATUS``) maps each code to an HTTP
status, and its single exception handler turns them into
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class ArchiverError(Exception):
    """Base of all deliberate errors. ``code`` is stable and machine-readable."""

    code: str = "internal"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class ConfigError(ArchiverError):
    code = "config_invalid"


class AuthError(ArchiverError):
    code = "unauthenticated"


class Forbidden(ArchiverError):
    code = "forbidden"


class InvalidInput(ArchiverError):
    code = "bad_request"


class NotFound(ArchiverError):
    code = "not_found"


class Conflict(ArchiverError):
    code = "conflict"


class Unavailable(ArchiverError):
    code = "unavailable"
