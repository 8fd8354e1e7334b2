"""The evidence store on S3 Object Lock (MinIO in the reference deployment).

Refuses to run on a bucket without Object Lock and versioning (AWS S3 User Guide, "Using
S3 Object Lock"). Every object is created with its retention (and legal hold) in the same
PutObject request (``x-amz-object-lock-*`` headers), so no unlocked version ever exists.

Write-once, in two steps:

1. list the versions of that exact key; any version or delete marker -> ObjectExists;
2. PutObject with ``If-None-Match: *`` (S3 conditional writes; MinIO supports it), which
   the server refuses with 412 when a current version exists -> ObjectExists.

Step 2 alone would accept a key whose latest version is a delete marker; step 1 alone
would race with a concurrent creator. Residual race: a writer that creates the key *and*
has it deleted (leaving a marker) between our step 1 and step 2 goes unnoticed; deleting
needs the retention to have expired, so in practice this needs a GOVERNANCE bypass or an
expired version, neither of which this adapter ever produces.

Integrity: our own SHA-256 of the bytes is stored as ``x-amz-meta-sha256`` and returned by
``stat``; ETags are never used as hashes (multipart and SSE ETags are not MD5s).
Deletes always name a version id and never send ``x-amz-bypass-governance-retention``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

from minio import Minio
from minio.commonconfig import ENABLED
from minio.helpers import DictType
from minio.retention import Retention as MinioRetention
from minio.time import from_iso8601utc, to_iso8601utc

from archiver.store._s3common import make_client, raw_put, translate
from archiver.store.errors import (
    BucketMisconfigured,
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    RetentionShortening,
    StoreError,
)
from archiver.store.port import (
    LockMode,
    ObjectInfo,
    PutResult,
    Retention,
    VersionEntry,
)

_META_SHA256 = "x-amz-meta-sha256"


def create_locked_bucket(client: Minio, bucket: str) -> None:
    """Create ``bucket`` with Object Lock (which also turns versioning on). For tests and
    ``archiver init``; an existing bucket is left alone (``check_bucket`` judges it)."""
    with translate(f"create bucket {bucket}"):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket, object_lock=True)


class S3ObjectStore:
    """``ObjectStore`` on an Object-Lock bucket. Raises StoreError subclasses only."""

    name = "s3"

    def __init__(self, client: Minio, bucket: str, *, check: bool = True) -> None:
        self._client = client
        self._bucket = bucket
        if check:
            self.check_bucket()

    # -- health -------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """BucketMisconfigured unless the bucket exists with versioning and Object Lock."""
        with translate(f"check bucket {self._bucket}"):
            if not self._client.bucket_exists(self._bucket):
                raise BucketMisconfigured(f"bucket {self._bucket!r} does not exist")
            versioning = self._client.get_bucket_versioning(self._bucket)
        if versioning.status != ENABLED:
            raise BucketMisconfigured(f"bucket {self._bucket!r} is not versioned")
        try:
            with translate(f"object lock config {self._bucket}"):
                self._client.get_object_lock_config(self._bucket)
        except StoreError as exc:
            if exc.details and "ObjectLockConfiguration" in str(exc.details.get("code")):
                raise BucketMisconfigured(
                    f"bucket {self._bucket!r} has no Object Lock", details=exc.details
                ) from exc
            if isinstance(exc, ObjectNotFound | BucketMisconfigured):
                raise BucketMisconfigured(f"bucket {self._bucket!r} has no Object Lock") from exc
            raise

    def ping(self) -> None:
        with translate(f"ping {self._bucket}"):
            exists = self._client.bucket_exists(self._bucket)
        if not exists:
            raise BucketMisconfigured(f"bucket {self._bucket!r} does not exist")

    # -- writes -------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retention: Retention,
        legal_hold: bool = False,
        content_type: str = "application/octet-stream",
        fresh: bool = False,
    ) -> PutResult:
        """Write-once create with retention (+ hold) in the same request. ObjectExists when
        the key has any version or delete marker (``fresh``: see the port)."""
        if not fresh and self._has_any_version(key):
            raise ObjectExists(f"{key}: already has a version")
        sha256 = hashlib.sha256(data).hexdigest()
        headers = {
            "Content-Type": content_type,
            # Conditional create: the server refuses (412) if a current version exists.
            "If-None-Match": "*",
            # Object Lock PUTs need an integrity header on AWS (Content-MD5 or a checksum).
            "Content-MD5": base64.b64encode(
                hashlib.md5(data, usedforsecurity=False).digest()
            ).decode(),
            "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(sha256)).decode(),
            _META_SHA256: sha256,
            "x-amz-object-lock-mode": retention.mode.value,
            "x-amz-object-lock-retain-until-date": _iso(retention.retain_until),
            "x-amz-object-lock-legal-hold": "ON" if legal_hold else "OFF",
        }
        with translate(f"put {key}", precondition=ObjectExists):
            result = raw_put(self._client, self._bucket, key, data, headers)
        if not result.version_id:
            raise BucketMisconfigured(f"{key}: no version id returned; bucket not versioned?")
        return PutResult(key=key, version_id=result.version_id, sha256=sha256, size=len(data))

    def _has_any_version(self, key: str) -> bool:
        # Versions are listed by key in lexical order, so the exact key comes first; stop at
        # the first other name instead of walking every key that shares the prefix.
        # (Not ``Minio.list_objects``: it moves a page's delete markers after its versions,
        # so a marker-only key would hide behind the versions of "<key>/child".)
        for entry in self._iter_versions(key, page_size=2):
            return entry.key == key
        return False

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        _require_version(version_id)
        with translate(f"legal hold {key}@{version_id}", access_denied=ObjectLocked):
            if on:
                self._client.enable_object_legal_hold(self._bucket, key, version_id)
            else:
                self._client.disable_object_legal_hold(self._bucket, key, version_id)

    def extend_retention(self, key: str, version_id: str, retain_until: datetime) -> None:
        """Move retain-until later. RetentionShortening when earlier than the current one
        (COMPLIANCE would also be refused by the server). No retention yet -> COMPLIANCE."""
        _require_version(version_id)
        what = f"extend retention {key}@{version_id}"
        with translate(what):
            current = self._client.get_object_retention(self._bucket, key, version_id)
        mode = LockMode.COMPLIANCE
        if current is not None and current.mode:
            mode = LockMode(current.mode)
            until = current.retain_until_date
            if until is not None and _utc(retain_until) < _utc(until):
                raise RetentionShortening(
                    f"{key}@{version_id}: retain-until {retain_until.isoformat()} is before "
                    f"the current {until.isoformat()}"
                )
        with translate(what, access_denied=RetentionShortening):
            self._client.set_object_retention(
                self._bucket, key, MinioRetention(mode.value, _utc(retain_until)), version_id
            )

    def delete_version(self, key: str, version_id: str) -> None:
        """Delete one version (never with governance bypass). The server refuses locked or
        held versions (403 AccessDenied) -> ObjectLocked."""
        _require_version(version_id)
        with translate(f"delete {key}@{version_id}", access_denied=ObjectLocked):
            self._client.remove_object(self._bucket, key, version_id=version_id)

    # -- reads --------------------------------------------------------------------------

    def get(self, key: str, version_id: str) -> bytes:
        _require_version(version_id)
        response: Any = None
        with translate(f"get {key}@{version_id}"):
            try:
                response = self._client.get_object(self._bucket, key, version_id=version_id)
                return bytes(response.read())
            finally:
                if response is not None:
                    response.close()
                    response.release_conn()

    def stat(self, key: str, version_id: str) -> ObjectInfo:
        _require_version(version_id)
        with translate(f"stat {key}@{version_id}"):
            obj = self._client.stat_object(self._bucket, key, version_id=version_id)
        headers = {k.lower(): v for k, v in (obj.metadata or {}).items()}
        retention = None
        mode = headers.get("x-amz-object-lock-mode")
        until = headers.get("x-amz-object-lock-retain-until-date")
        until_dt = _parse_time(until)
        if mode and until_dt is not None:
            retention = Retention(LockMode(mode), until_dt)
        return ObjectInfo(
            key=key,
            version_id=obj.version_id or version_id,
            size=int(obj.size or 0),
            sha256=headers.get(_META_SHA256),
            retention=retention,
            legal_hold=headers.get("x-amz-object-lock-legal-hold", "OFF").upper() == "ON",
            last_modified=_utc(obj.last_modified) if obj.last_modified else None,
        )

    def list_versions(self, prefix: str = "") -> Iterator[VersionEntry]:
        """ListObjectVersions in the server's order: keys lexical, newest version first.

        Parsed here rather than through ``Minio.list_objects``, which regroups each page
        into all versions first, then all delete markers, losing that order.
        """
        return self._iter_versions(prefix, page_size=1000)

    def _iter_versions(self, prefix: str, *, page_size: int) -> Iterator[VersionEntry]:
        key_marker = ""
        version_marker = ""
        while True:
            query: DictType = {"versions": "", "prefix": prefix, "max-keys": str(page_size)}
            if key_marker:
                query["key-marker"] = key_marker
                query["version-id-marker"] = version_marker
            with translate(f"list versions {prefix!r}"):
                response = self._client._execute("GET", self._bucket, query_params=query)
            rows, truncated, key_marker, version_marker = _parse_versions(response.data)
            yield from rows
            if not truncated or not key_marker:
                return

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys whose latest version is an object (not a delete marker), in lexical order."""
        with translate(f"list keys {prefix!r}"):
            for obj in self._client.list_objects(self._bucket, prefix=prefix, recursive=True):
                yield obj.object_name


def connect_s3(
    endpoint: str,
    access_key: str,
    secret_key: str,
    secure: bool,
    bucket: str,
    region: str | None = None,
) -> S3ObjectStore:
    """Client on a short-timeout pool (outage seen in ~2 s) and a checked bucket."""
    client = make_client(endpoint, access_key, secret_key, secure=secure, region=region)
    return S3ObjectStore(client, bucket)


def _parse_versions(body: bytes) -> tuple[list[VersionEntry], bool, str, str]:
    """One ListObjectVersions page (AWS S3 API Reference, ListObjectVersions)."""
    # The XML comes from the configured S3 endpoint, as it does for minio-py's parser.
    root = ElementTree.fromstring(body)  # noqa: S314 - trusted server, no DTDs in S3 XML
    rows: list[VersionEntry] = []
    truncated = False
    next_key = next_version = ""
    for child in root:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag in ("Version", "DeleteMarker"):
            fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "") for c in child}
            modified = fields.get("LastModified")
            rows.append(
                VersionEntry(
                    key=fields.get("Key", ""),
                    version_id=fields.get("VersionId", "null"),
                    is_delete_marker=tag == "DeleteMarker",
                    is_latest=fields.get("IsLatest", "").lower() == "true",
                    size=int(fields.get("Size") or 0),
                    last_modified=_parse_time(modified),
                )
            )
        elif tag == "IsTruncated":
            truncated = (child.text or "").lower() == "true"
        elif tag == "NextKeyMarker":
            next_key = child.text or ""
        elif tag == "NextVersionIdMarker":
            next_version = child.text or ""
    return rows, truncated, next_key, next_version


def _require_version(version_id: str) -> None:
    # Without a version id S3 would act on the latest version, or add a delete marker.
    if not version_id:
        raise ObjectNotFound("a version id is required")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _parse_time(text: str | None) -> datetime | None:
    parsed = from_iso8601utc(text) if text else None
    return _utc(parsed) if parsed is not None else None


def _iso(value: datetime) -> str:
    text = to_iso8601utc(_utc(value))
    assert text is not None  # only None for a None input
    return str(text)
