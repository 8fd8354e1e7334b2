"""Vendor exceptions never leave the S3 adapters: each maps to one StoreError subclass."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import urllib3
from minio.error import InvalidResponseError, S3Error, ServerError

from archiver.store._s3common import MAX_SINGLE_PUT, raw_put, translate
from archiver.store.errors import (
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
    StoreUnavailable,
)


def s3_error(code: str, status: int, message: str = "msg") -> S3Error:
    response = SimpleNamespace(status=status, headers={}, data=b"")
    return S3Error(response, code, message, "/b/k", "req", "host", bucket_name="b")


@pytest.mark.parametrize(
    ("exc", "kwargs", "expected"),
    [
        (s3_error("NoSuchKey", 404), {}, ObjectNotFound),
        (s3_error("NoSuchVersion", 404), {}, ObjectNotFound),
        (s3_error("MethodNotAllowed", 405), {}, ObjectNotFound),  # a delete marker
        (s3_error("PreconditionFailed", 412), {}, ObjectExists),
        (
            s3_error("PreconditionFailed", 412),
            {"precondition": PreconditionFailed},
            PreconditionFailed,
        ),
        (s3_error("AccessDenied", 403), {"access_denied": ObjectLocked}, ObjectLocked),
        (
            s3_error("InvalidRequest", 400, "Object is WORM protected and cannot be overwritten"),
            {"access_denied": ObjectLocked},
            ObjectLocked,
        ),
        (
            s3_error("InvalidRequest", 400, "something else"),
            {"access_denied": ObjectLocked},
            StoreError,
        ),
        (s3_error("AccessDenied", 403), {}, StoreError),
        (s3_error("InternalError", 500), {}, StoreUnavailable),
        (s3_error("XMinioServerNotInitialized", 503), {}, StoreUnavailable),
        (ServerError("boom", 502), {}, StoreUnavailable),
        (InvalidResponseError(502, "text/html", "<html>"), {}, StoreUnavailable),
        (urllib3.exceptions.MaxRetryError(None, "/", "refused"), {}, StoreUnavailable),
        (urllib3.exceptions.ConnectTimeoutError("timeout"), {}, StoreUnavailable),
        (ConnectionResetError(), {}, StoreUnavailable),
    ],
)
def test_translate(exc: Exception, kwargs: dict, expected: type[StoreError]):
    with pytest.raises(expected) as info, translate("op", **kwargs):
        raise exc
    assert type(info.value) is expected
    assert info.value.__cause__ is exc


def test_our_own_errors_pass_through():
    with pytest.raises(ObjectExists), translate("op"):
        raise ObjectExists("already")


def test_raw_put_refuses_more_than_one_put_can_carry():
    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_SINGLE_PUT + 1

    with pytest.raises(StoreError, match="single-PUT"):
        raw_put(None, "b", "k", Huge(b""), {})  # type: ignore[arg-type]
