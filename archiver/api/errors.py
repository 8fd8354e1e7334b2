"""The one JSON error shape: ``{"error": {"code": str, "message": str, "details": any}}``.

Every error leaving the service goes through these handlers, pinned by
``tests/unit/api/test_error_shape.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from archiver.errors import ArchiverError
from search.errors import (
    IndexUnavailable,
    InvalidRequest,
    QuerySyntaxError,
    QueryTooComplex,
    SearchError,
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


async def _archiver_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArchiverError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _search_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, QueryTooComplex):  # the limit by name; a too-long query is not echoed
        return error_response(
            400,
            exc.code,
            exc.message,
            {"position": exc.position, "limit": exc.limit, "maximum": exc.maximum},
        )
    if isinstance(exc, QuerySyntaxError):
        return error_response(
            400, exc.code, exc.message, {"position": exc.position, "query": exc.query}
        )
    if isinstance(exc, InvalidRequest):
        return error_response(400, exc.code, str(exc))
    if isinstance(exc, IndexUnavailable):
        return error_response(503, exc.code, str(exc), {"backend": "index"})
    assert isinstance(exc, SearchError)
    return error_response(500, exc.code, str(exc))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
        for err in exc.errors()
    ]
    return error_response(422, "invalid_request", "request failed validation", details)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The message of an unexpected error may contain content; never echo it.
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ArchiverError, _archiver_error)
    app.add_exception_handler(SearchError, _search_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
