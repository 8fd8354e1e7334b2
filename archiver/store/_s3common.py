"""Plumbing shared by the S3 adapters: the HTTP pool, the client factory, error mapping
and a raw single-PUT with headers that minio-py would otherwise rewrite.

Why a raw PUT: ``Minio.put_object`` turns every header it does not know (``If-None-Match``,
``If-Match``) into ``x-amz-meta-*`` user metadata, and switches to multipart upload above
5 MiB, where a conditional header would have to ride on CompleteMultipartUpload instead.
We call the client's own signed single-request path (``Minio._put_object``), which sends
our headers verbatim, and we cap objects at the S3 single-PUT limit of 5 GiB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from urllib3.util import Retry, Timeout

from archiver.store.errors import (
    ObjectExists,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from minio.helpers import ObjectWriteResult

# S3 PutObject limit for one request (AWS S3 User Guide, "Uploading objects").
MAX_SINGLE_PUT: Final = 5 * 1024**3

_NOT_FOUND_CODES: Final = frozenset(
    {
        "NoSuchKey",
        "NoSuchVersion",
        "NoSuchObject",
        "MethodNotAllowed",
        "NoSuchObjectLockConfiguration",
    }
)


def make_pool(
    *,
    connect_timeout: float = 1.0,
    read_timeout: float = 60.0,
    pool_size: int = 32,
    cert_check: bool = True,
) -> urllib3.PoolManager:
    """An HTTP pool that notices an outage in about two seconds.

    Connection errors are retried once for every method (the request never left); read
    errors and 5xx answers are retried only for GET/HEAD, because a retried PUT whose first
    attempt landed would come back 412 and look like someone else's write.
    """
    return urllib3.PoolManager(
        timeout=Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=pool_size,
        cert_reqs="CERT_REQUIRED" if cert_check else "CERT_NONE",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=Retry(
            total=2,
            connect=1,
            read=1,
            status=1,
            redirect=0,
            backoff_factor=0.1,
            status_forcelist=[500, 502, 503, 504],
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,
        ),
    )


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool,
    region: str | None = None,
    connect_timeout: float = 1.0,
    pool_size: int = 128,
) -> Minio:
    """A ``Minio`` client on our pool (``endpoint`` is ``host:port``, no scheme). The pool
    holds a connection for every thread that may use the client at once (processors'
    record writers, the log's tile writers, the indexer's readers, capture): a smaller
    pool discards connections and each later request pays a new TCP handshake."""
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        region=region,
        http_client=make_pool(connect_timeout=connect_timeout, pool_size=pool_size),
    )


def _status(exc: S3Error) -> int:
    response = exc.response
    return int(getattr(response, "status", 0) or 0)


@contextmanager
def translate(
    what: str,
    *,
    access_denied: type[StoreError] = StoreError,
    precondition: type[StoreError] = ObjectExists,
) -> Iterator[None]:
    """Turn minio / urllib3 exceptions raised inside the block into StoreError subclasses.

    ``access_denied`` says what a 403 means for this call (ObjectLocked for a delete of a
    locked version); ``precondition`` what a 412 means (ObjectExists for a create,
    PreconditionFailed for a working-state compare-and-swap).
    """
    try:
        yield
    except S3Error as exc:
        code = exc.code or ""
        details = {"code": code, "status": _status(exc), "message": exc.message}
        if code in ("PreconditionFailed",) or _status(exc) == 412:
            raise precondition(f"{what}: precondition failed", details=details) from exc
        if code in _NOT_FOUND_CODES:
            raise ObjectNotFound(f"{what}: not found", details=details) from exc
        # AWS refuses a locked version with 403 AccessDenied; MinIO with 400 InvalidRequest
        # "Object is WORM protected and cannot be overwritten".
        worm = code == "InvalidRequest" and "WORM" in (exc.message or "")
        if code == "AccessDenied" or worm:
            raise access_denied(f"{what}: refused by the server", details=details) from exc
        if _status(exc) >= 500 or code in ("SlowDown", "XMinioServerNotInitialized"):
            raise StoreUnavailable(f"{what}: server error", details=details) from exc
        raise StoreError(f"{what}: {code or 'S3 error'}", details=details) from exc
    except ServerError as exc:
        raise StoreUnavailable(f"{what}: server error {exc.status_code}") from exc
    except InvalidResponseError as exc:
        # A non-S3 answer (proxy page, half-started server): treat as unavailable.
        raise StoreUnavailable(f"{what}: invalid response") from exc
    except MinioException as exc:
        raise StoreError(f"{what}: {exc}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StoreUnavailable(f"{what}: {type(exc).__name__}") from exc


def raw_put(
    client: Minio,
    bucket: str,
    key: str,
    data: bytes,
    headers: Mapping[str, str],
) -> ObjectWriteResult:
    """One signed PutObject request carrying ``headers`` verbatim (see module docstring)."""
    if len(data) > MAX_SINGLE_PUT:
        raise StoreError(
            f"{key}: {len(data)} bytes exceeds the single-PUT limit; write-once needs one PUT",
            code="object_too_large",
        )
    # ``_put_object`` mutates the dict it is given (adds Host, signature); pass a copy.
    return client._put_object(bucket, key, data, dict(headers))


def strip_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def ping_bucket(client: Minio, bucket: str) -> bool:
    """True when the bucket exists; StoreUnavailable when the server cannot be reached."""
    with translate(f"ping {bucket}"):
        return bool(client.bucket_exists(bucket))


__all__ = [
    "MAX_SINGLE_PUT",
    "make_client",
    "make_pool",
    "ping_bucket",
    "raw_put",
    "strip_etag",
    "translate",
]
