"""The one JSON error shape: ``{"error": {"code": str, "message": str, "details": any}}``,
and the one place where an error's code becomes an HTTP status.

Domain errors (``archiver.errors.ArchiverError`` and ``search.errors.SearchError``) carry
a stable ``code`` and nothing about HTTP; :data:`HTTP_STATUS` maps each code to the
status the API answers with (an unknown code is 500). Framework errors (an unknown
route, a wrong method, a failed validation) keep the status the framework gives them.

Every error leaving the service goes through these handlers, pinned by
``tests/unit/api/test_error_shape.py``; ``tests/unit/api/test_status_table.py`` checks
that every code raised anywhere is in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from archiver.api.deps import roles_of
from archiver.errors import ArchiverError, InvalidInput
from search.errors import IndexUnavailable, QuerySyntaxError, QueryTooComplex, SearchError

# code -> HTTP status, grouped by status. Every code any error carries is listed, the
# 500s too, so that a new code is a decision here rather than a silent 500.
_BY_STATUS: Final[dict[int, tuple[str, ...]]] = {
    400: (
        "bad_request", "invalid_cursor", "invalid_since", "invalid_action",
        "media_id_invalid", "hold_scope_invalid", "hold_scope_missing", "proof_range",
        "token_number_invalid", "token_name_invalid", "token_expiry_invalid",
        "token_person_invalid",
        # cases, Bates numbers and durable jobs
        "case_name_invalid", "case_matter_invalid", "case_field_invalid",
        "case_number_invalid", "case_scope_too_large", "case_contact_invalid",
        "case_custodian_outside_scope", "case_dates_invalid", "case_scope_empty",
        "bates_start_invalid", "bates_item_invalid", "job_kind_invalid", "job_kind_unknown",
        "job_params_invalid", "job_params_too_large", "job_id_invalid", "job_scope",
        "key_not_pinned",
        # signed audit reports: a malformed period, sample or tree size
        "report_request_invalid", "report_period_invalid", "report_sample_invalid",
        "report_tree_size_invalid",
        # export options (archiver.export.job, archiver.api.routes.exports)
        "export_bates_prefix_invalid", "export_time_zone_invalid", "export_format_invalid",
        "export_contact_invalid", "export_mode_invalid",
        # search.errors: the caller's query, filter, facet or cursor
        "query_syntax", "query_too_long", "query_too_deep", "query_too_many_terms",
        "invalid_request",  # (a request that fails validation is 422: the framework's)
    ),
    401: (
        "unauthenticated", "token_missing", "token_malformed", "token_invalid",
        "token_revoked", "token_expired", "signature_invalid", "signature_missing",
        "signature_malformed", "signature_mismatch",
    ),
    403: (
        "forbidden", "role_forbidden", "approver_without_person", "handshake_invalid",
        "verify_token_mismatch", "case_number_forbidden", "report_scope",
    ),
    404: (
        "not_found", "object_not_found", "key_not_found", "graph_not_found",
        "archive_not_found", "token_not_found", "record_not_found", "subject_not_found",
        "erasure_not_found", "review_not_found", "hold_not_found", "no_checkpoint",
        "leaf_not_found", "conversation_not_found", "case_not_found", "job_not_found",
        "report_not_found", "report_not_ready", "report_checkpoint_not_found",
        "artifact_not_found",
    ),
    409: (
        "conflict", "object_exists", "object_locked", "retention_shortening",
        "precondition_failed", "index_generation_retired", "key_protected",
        "checkpoint_refused", "erasure_refused", "erasure_out_of_scope", "erasure_pending",
        "review_not_pending", "review_same_approver", "case_closed", "case_not_closed",
        "hold_owned_by_case",
        "job_cancelled", "job_lost", "job_invalid_transition", "bates_contention",
        "bates_exhausted",
        "export_state", "report_no_checkpoint", "report_checkpoint_mismatch",
        "export_state", "export_subject_erased", "export_empty_log", "export_scope_changed",
    ),
    410: ("key_shredded", "content_shredded", "media_expired"),
    413: ("payload_too_large",),
    422: (
        "decryption_failed", "malformed_envelope", "proof_invalid", "tile_invalid",
        "note_invalid", "checkpoint_invalid", "entry_invalid", "export_input_invalid",
    ),
    # Meta refused or answered nonsense, or our own token to Meta is bad: a server-side
    # problem, not the API caller's; the send proxy's "sent, answer not archived" too.
    502: (
        "graph_error", "graph_auth", "graph_request_rejected", "graph_bad_response",
        "media_hash_mismatch", "media_too_large", "sent_not_archived",
    ),
    503: (
        "unavailable", "store_unavailable", "audit_unavailable", "graph_unavailable",
        "graph_not_configured", "index_unavailable", "job_interrupted",
    ),
    500: (
        "internal", "config_invalid", "kek_invalid", "store_error", "bucket_misconfigured",
        "object_too_large", "invalid_key", "key_error", "ledger_error", "log_corrupted",
        "record_invalid", "raw_batch_invalid", "index_error", "invalid_document",
        "job_checkpoint_too_large", "workarea_key_invalid", "export_error",
        "export_gather_failed", "export_transcript_pages",
    ),
}  # fmt: skip

HTTP_STATUS: Final[Mapping[str, int]] = MappingProxyType(
    {code: status for status, codes in _BY_STATUS.items() for code in codes}
)


def http_status(code: str) -> int:
    """The HTTP status of an error ``code``; 500 for a code the table does not know."""
    return HTTP_STATUS.get(code, 500)


class BadRequest(InvalidInput):
    """A route refuses its own parameters (a malformed cursor, an unknown action)."""


# Framework errors carry a status and no code: the code the shape gives each status.
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


def code_response(
    code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error shape for ``code``, with the status the table gives it (for routes that
    answer an error without raising one)."""
    return error_response(http_status(code), code, message, details, headers)


async def _archiver_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArchiverError)
    return code_response(exc.code, exc.message, exc.details)


async def _search_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SearchError)
    if isinstance(exc, QueryTooComplex):  # the limit by name; a too-long query is not echoed
        details: Any = {"position": exc.position, "limit": exc.limit, "maximum": exc.maximum}
        return code_response(exc.code, exc.message, details)
    if isinstance(exc, QuerySyntaxError):
        return code_response(exc.code, exc.message, {"position": exc.position, "query": exc.query})
    if isinstance(exc, IndexUnavailable):
        return code_response(exc.code, str(exc), {"backend": "index"})
    return code_response(exc.code, str(exc))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    try:
        # FastAPI parses a JSON body before the route's dependencies run, so an unparseable
        # body would otherwise answer a stranger with 422 and a description of the route.
        await authenticate_first(request)
    except ArchiverError as refused:
        return await _archiver_error(request, refused)
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
        for err in exc.errors()
    ]
    return error_response(422, "invalid_request", "request failed validation", details)


async def authenticate_first(request: Request) -> None:
    """Run the route's token-and-role dependency if it has not run yet (raises if refused)."""
    if getattr(request.state, "principal", None) is not None:
        return
    route = request.scope.get("route")
    guard = _guard_of(getattr(route, "dependant", None))
    if guard is not None:
        await guard(request)


def _guard_of(dependant: Any) -> Any:
    """The ``allow(...)`` dependency of a route (it carries ``allowed_roles``), or None."""
    for dependency in getattr(dependant, "dependencies", ()):
        if roles_of(dependency.call):
            return dependency.call
        inner = _guard_of(dependency)
        if inner is not None:
            return inner
    return None


async def _client_gone(_: Request, exc: Exception) -> JSONResponse:
    # The sender went away before its body arrived whole: nothing was captured and no one
    # hears the answer. Not an error of ours: left to the catch-all, each dropped connection
    # wrote a full traceback at error level, which any stranger could repeat at will.
    assert isinstance(exc, ClientDisconnect)
    return error_response(400, "bad_request", "the request body did not arrive whole")


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The message of an unexpected error may contain content; never echo it.
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ArchiverError, _archiver_error)
    app.add_exception_handler(SearchError, _search_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
