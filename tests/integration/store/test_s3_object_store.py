"""S3-only behaviour of the evidence store against real MinIO: bucket checks, the raw
single PUT, outage detection."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from archiver.store._s3common import make_client
from archiver.store.errors import BucketMisconfigured, ObjectExists, StoreUnavailable
from archiver.store.port import LockMode, Retention
from archiver.store.s3 import S3ObjectStore, connect_s3

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _ret(seconds: float = 60) -> Retention:
    return Retention(LockMode.COMPLIANCE, datetime.now(UTC) + timedelta(seconds=seconds))


def test_bucket_without_object_lock_is_refused(s3_env):
    client = s3_env.client()
    bucket = f"p-{uuid.uuid4().hex[:20]}"
    client.make_bucket(bucket)
    try:
        with pytest.raises(BucketMisconfigured, match="not versioned"):
            S3ObjectStore(client, bucket)
        from minio.versioningconfig import ENABLED, VersioningConfig

        client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
        with pytest.raises(BucketMisconfigured, match="Object Lock"):
            S3ObjectStore(client, bucket)
    finally:
        client.remove_bucket(bucket)


def test_missing_bucket_is_refused(s3_env):
    with pytest.raises(BucketMisconfigured):
        S3ObjectStore(s3_env.client(), f"m-{uuid.uuid4().hex[:20]}")


def test_connect_s3_factory(s3_env, locked_bucket):
    store = connect_s3(s3_env.endpoint, s3_env.access_key, s3_env.secret_key, False, locked_bucket)
    store.ping()
    assert store.name == "s3"


def test_object_over_5_mib_is_one_conditional_put(s3_env, locked_bucket):
    client = s3_env.client()
    store = S3ObjectStore(client, locked_bucket)
    key = f"{uuid.uuid4().hex[:8]}/big.bin"
    data = os.urandom(6 * MiB + 3)
    trace = io.StringIO()
    client.trace_on(trace)
    try:
        res = store.put(key, data, retention=_ret())
        with pytest.raises(ObjectExists):
            store.put(key, data, retention=_ret())
    finally:
        client.trace_off()
    requests = [
        line for line in trace.getvalue().splitlines() if line.startswith(("PUT ", "POST "))
    ]
    # Exactly one PutObject, no multipart (POST ?uploads / PUT ?partNumber=).
    assert len(requests) == 1, requests
    assert "uploads" not in requests[0] and "partNumber" not in requests[0]
    assert "If-None-Match: *" in trace.getvalue()
    assert res.sha256 == hashlib.sha256(data).hexdigest()

    raw = s3_env.raw_client().stat_object(locked_bucket, key, version_id=res.version_id)
    # A single-part ETag is the MD5 of the bytes; a multipart one ends in "-<parts>".
    assert raw.etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
    headers = {k.lower() for k in raw.metadata}
    assert "x-amz-meta-sha256" in headers
    assert "x-amz-meta-if-none-match" not in headers  # not smuggled in as metadata
    assert store.get(key, res.version_id) == data
    assert [v.version_id for v in store.list_versions(key)] == [res.version_id]


def test_stock_put_object_is_not_conditional(s3_env, locked_bucket):
    """Why the adapter does not use ``Minio.put_object``: the header becomes metadata and
    the second write silently adds a version."""
    raw = s3_env.raw_client()
    key = f"{uuid.uuid4().hex[:8]}/stock"
    for _ in range(2):
        raw.put_object(locked_bucket, key, io.BytesIO(b"x"), 1, metadata={"If-None-Match": "*"})
    versions = list(raw.list_objects(locked_bucket, prefix=key, include_version=True))
    assert len(versions) == 2
    stat = raw.stat_object(locked_bucket, key)
    assert "x-amz-meta-if-none-match" in {k.lower() for k in stat.metadata}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_store_unavailable_within_seconds(s3_env, locked_bucket):
    endpoint = f"127.0.0.1:{_closed_port()}"
    client = make_client(endpoint, "x", "y", secure=False, region="us-east-1")
    store = S3ObjectStore(client, locked_bucket, check=False)
    calls = [
        store.ping,
        lambda: store.put("k", b"x", retention=_ret()),
        lambda: store.get("k", "v"),
        lambda: list(store.list_versions("")),
        lambda: S3ObjectStore(client, locked_bucket),
    ]
    for call in calls:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable):
            call()
        assert time.monotonic() - start < 3.0


def test_blackholed_server_is_store_unavailable_within_seconds():
    # TEST-NET-1 (RFC 5737): never routed, so the connect either times out or fails fast.
    client = make_client("192.0.2.1:9000", "x", "y", secure=False, region="us-east-1")
    store = S3ObjectStore(client, "any", check=False)
    start = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.ping()
    assert time.monotonic() - start < 4.0
