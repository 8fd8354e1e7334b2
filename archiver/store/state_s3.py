"""Working state in an S3 bucket without Object Lock or versioning.

Compare-and-swap uses S3 conditional writes on PutObject: ``If-None-Match: *`` (create
only) and ``If-Match: "<etag>"`` (replace only what we read); a lost race is 412
PreconditionFailed (AWS S3 User Guide, "Conditional writes"; MinIO implements both).
The token is the ETag. ETags of single-part PUTs are the MD5 of the bytes, so writing back
byte-identical content yields the same token (ABA): callers that need to detect "changed
and changed back" put a counter or lease id inside the value.

``If-Match`` against a missing key: S3 answers 404 NoSuchKey, mapped to
PreconditionFailed. MinIO releases before the fix of minio/minio#21526 (Aug 2025) accepted
the write instead; the pinned build answers NoSuchKey (the contract suite checks it).

Delete with ``if_match`` is best effort: we compare the current ETag, then send DELETE
with ``If-Match``. AWS honours conditional deletes; the pinned MinIO build ignores the
header (measured), so a writer slipping in between our check and the DELETE loses its
write there. Callers needing a strict conditional delete write a tombstone value instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from minio import Minio
from minio.helpers import DictType

from archiver.store._s3common import make_client, raw_put, strip_etag, translate
from archiver.store.errors import (
    BucketMisconfigured,
    ObjectNotFound,
    PreconditionFailed,
    StoreError,
)
from archiver.store.port import StateValue


class S3StateStore:
    """``StateStore`` on a plain bucket. Raises StoreError subclasses only."""

    name = "s3"

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (plain: no lock, no versioning)."""
        with translate(f"create bucket {self._bucket}"):
            if not self._client.bucket_exists(self._bucket):
                self._client.make_bucket(self._bucket)

    def ping(self) -> None:
        with translate(f"ping {self._bucket}"):
            exists = self._client.bucket_exists(self._bucket)
        if not exists:
            raise BucketMisconfigured(f"state bucket {self._bucket!r} does not exist")

    def get(self, key: str) -> StateValue | None:
        response: Any = None
        try:
            with translate(f"get {key}"):
                try:
                    response = self._client.get_object(self._bucket, key)
                    data = bytes(response.read())
                    etag = strip_etag(response.headers.get("ETag"))
                finally:
                    if response is not None:
                        response.close()
                        response.release_conn()
        except ObjectNotFound:
            return None
        return StateValue(value=data, token=etag)

    def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        if if_match is not None and if_absent:
            raise ValueError("if_match and if_absent are exclusive")
        headers = {"Content-Type": "application/octet-stream"}
        if if_absent:
            headers["If-None-Match"] = "*"
        if if_match is not None:
            headers["If-Match"] = f'"{strip_etag(if_match)}"'
        try:
            with translate(f"put {key}", precondition=PreconditionFailed):
                result = raw_put(self._client, self._bucket, key, value, headers)
        except ObjectNotFound as exc:  # If-Match on a key deleted meanwhile (AWS: 404)
            raise PreconditionFailed(f"{key}: does not exist") from exc
        etag = strip_etag(result.etag)
        if not etag:
            raise StoreError(f"put {key}: server returned no ETag")
        return etag

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        headers: DictType = {}
        if if_match is not None:
            current = self.get(key)
            if current is None or current.token != strip_etag(if_match):
                raise PreconditionFailed(f"{key}: token does not match")
            headers["If-Match"] = f'"{strip_etag(if_match)}"'
        with translate(f"delete {key}", precondition=PreconditionFailed):
            # Signed DELETE through the client's request path so If-Match is sent as is.
            self._client._execute("DELETE", self._bucket, key, headers=headers or None)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in lexical (UTF-8 byte) order, as S3 lists them."""
        with translate(f"list {prefix!r}"):
            for obj in self._client.list_objects(self._bucket, prefix=prefix, recursive=True):
                yield obj.object_name


def connect_s3_state(
    endpoint: str,
    access_key: str,
    secret_key: str,
    secure: bool,
    bucket: str,
    region: str | None = None,
) -> S3StateStore:
    client = make_client(endpoint, access_key, secret_key, secure=secure, region=region)
    return S3StateStore(client, bucket)
