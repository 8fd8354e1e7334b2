"""The root of every error the service raises on purpose.

Tree (each package adds its own subclasses next to its code)::

    ArchiverError                      code: "internal"
    ├── ConfigError                    bad settings or policy files (start-up)
    ├── StoreError                     archiver.store.errors
    │   ├── StoreUnavailable           backend unreachable -> 503
    │   ├── ObjectExists               write-once violated -> 409
    │   ├── ObjectNotFound             -> 404
    │   ├── ObjectLocked               retention / legal hold refused the change -> 409
    │   ├── RetentionShortening        asked to shorten a retain-until -> 409
    │   ├── PreconditionFailed         compare-and-swap lost (working state) -> 409
    │   └── BucketMisconfigured        bucket lacks Object Lock / versioning (start-up)
    ├── IndexError_                    search.errors (kept in search/, mapped at the edge)
    ├── AuthError                      -> 401 / 403
    └── BadRequest                     -> 400 / 413 / 415 / 422

Every error carries a machine-readable ``code`` and an HTTP ``status``; the API's
single exception handler turns them into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class ArchiverError(Exception):
    """Base of all deliberate errors. ``code`` is stable and machine-readable."""

    code: str = "internal"
    status: int = 500

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class ConfigError(ArchiverError):
    code = "config_invalid"
    status = 500


class AuthError(ArchiverError):
    code = "unauthenticated"
    status = 401


class Forbidden(ArchiverError):
    code = "forbidden"
    status = 403


class BadRequest(ArchiverError):
    code = "bad_request"
    status = 400


class NotFound(ArchiverError):
    code = "not_found"
    status = 404


class Conflict(ArchiverError):
    code = "conflict"
    status = 409


class Unavailable(ArchiverError):
    code = "unavailable"
    status = 503
