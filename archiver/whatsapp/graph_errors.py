"""Errors of the Graph API client, and the pure mapping from a Graph answer to one.

The tree and what each error means are in ``graph``'s module docstring; codes from
the Cloud API "Error codes" and Graph API "Handling errors" pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from archiver.errors import ArchiverError

__all__ = [
    "GraphAuthError",
    "GraphBadResponse",
    "GraphError",
    "GraphNotFound",
    "GraphRequestError",
    "GraphUnavailable",
    "MediaExpired",
    "MediaHashMismatch",
    "MediaTooLarge",
    "error_for",
    "meta_error_of",
]

# Graph/Cloud API codes that mean "try later": 1 unknown, 2 service, 4/17/341 app or
# user rate limit, 80007 WABA rate limit, 130429 throughput, 131016 service
# unavailable, 133004 server temporarily unavailable (Cloud API "Error codes").
_TRANSIENT_CODES: Final = frozenset({1, 2, 4, 17, 341, 80007, 130429, 131016, 133004})
_AUTH_CODES: Final = frozenset({190, 10, *range(200, 300)})


class GraphError(ArchiverError):
    """Meta refused or could not be reached. ``meta_error`` is Meta's ``error`` object."""

    code = "graph_error"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        meta_error: Mapping[str, Any] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.http_status = http_status
        self.meta_error: dict[str, Any] | None = dict(meta_error) if meta_error else None

    @property
    def meta_code(self) -> int | None:
        value = (self.meta_error or {}).get("code")
        return value if isinstance(value, int) else None


class GraphUnavailable(GraphError):
    code = "graph_unavailable"


class GraphAuthError(GraphError):
    # Our token to Meta is bad: a server-side problem, not the API caller's.
    code = "graph_auth"


class GraphNotFound(GraphError):
    code = "graph_not_found"


class MediaExpired(GraphNotFound):
    code = "media_expired"


class GraphRequestError(GraphError):
    code = "graph_request_rejected"


class GraphBadResponse(GraphError):
    code = "graph_bad_response"


class MediaHashMismatch(GraphError):
    code = "media_hash_mismatch"


class MediaTooLarge(GraphError):
    code = "media_too_large"


def meta_error_of(body: object) -> dict[str, Any] | None:
    """Meta's ``{"error": {...}}`` object from a parsed body, if there is one."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return err
    return None


def error_for(http_status: int, body: object, *, what: str) -> GraphError | None:
    """The error a Graph answer stands for, or None if it is a success (pure)."""
    err = meta_error_of(body)
    if http_status < 400 and err is None:
        return None
    code = err.get("code") if err else None
    subcode = err.get("error_subcode") if err else None
    message = f"{what}: HTTP {http_status}"
    if err and isinstance(err.get("message"), str):
        message += f": {err['message']}"
    kwargs: dict[str, Any] = {"http_status": http_status, "meta_error": err}
    if http_status in (401, 403) or code in _AUTH_CODES:
        return GraphAuthError(message, **kwargs)
    if (
        http_status == 429
        or http_status >= 500
        or code in _TRANSIENT_CODES
        or (err is not None and err.get("is_transient") is True)
    ):
        return GraphUnavailable(message, **kwargs)
    if http_status == 404 or (code == 100 and subcode == 33):
        return GraphNotFound(message, **kwargs)
    return GraphRequestError(message, **kwargs)
