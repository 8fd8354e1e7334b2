"""The working area: finished job artifacts (export packages, report PDFs), OUTSIDE the
locked evidence store (docs/jobs.md, "Working area").

Why outside: an export holds decrypted content. Under a COMPLIANCE lock it could not be
deleted when its subject is crypto-shredded, so the shredding would be void. The working
area is therefore plain storage that we may delete from at any time:

- embedded default: ``<data_dir>/workarea/`` (0700 folder, 0600 files);
- S3: its own bucket (``ARCHIVER_WORKAREA_BUCKET``), created without Object Lock and
  without versioning. A bucket that has either is refused (``BucketMisconfigured``): a
  lock would keep the plaintext, versioning would keep a deleted artifact as a noncurrent
  version. It is not the state bucket, so listing artifacts never walks working state
  and a lifecycle rule can be put on it alone.

Every artifact ``K`` has a sidecar ``K.meta.json``: size, SHA-256, content type, creation
time and the subjects (pseudonyms) whose content it holds, for expiry and erasure.
Writes stream from an iterator of byte chunks or a binary file and never hold the whole
artifact in memory (S3: multipart upload in ``PART_SIZE`` parts); reads stream too.

Raises StoreError subclasses (``ObjectNotFound`` for a missing artifact).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

from minio import Minio

from archiver.store._s3common import translate
from archiver.store.errors import BucketMisconfigured, ObjectNotFound, StoreError
from archiver.store.state_sqlite import private_dir

META_SUFFIX = ".meta.json"
PART_SIZE = 8 * 1024 * 1024  # S3 multipart part: memory per upload is about one part
READ_CHUNK = 256 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")  # no leading dot

Chunks = Iterable[bytes] | IO[bytes]


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """A finished artifact. ``subjects``: pseudonyms of the people whose content it holds
    (erasure drops every artifact naming the erased subject)."""

    key: str
    size: int
    sha256: str
    content_type: str
    created_at: datetime
    subjects: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256,
                "content_type": self.content_type, "created_at": self.created_at.isoformat(),
                "subjects": list(self.subjects)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ArtifactRef:
        return cls(doc["key"], int(doc["size"]), doc["sha256"], doc["content_type"],
                   datetime.fromisoformat(doc["created_at"]), tuple(doc.get("subjects") or ()))


def check_key(key: str) -> str:
    """``a/b/c`` of safe segments (no ``..``, no leading dot, no sidecar suffix)."""
    parts = key.split("/")
    if (not parts or any(not _SEGMENT.match(p) for p in parts) or key.endswith(META_SUFFIX)
            or ".." in key):
        raise StoreError(f"invalid working-area key {key!r}", code="workarea_key_invalid")
    return key


class WorkArea(Protocol):
    """Plain, deletable storage for job artifacts. Raises StoreError subclasses."""

    name: str

    def ensure(self) -> None:
        """Create the folder or bucket if missing; refuse a locked or versioned bucket."""

    def write(self, key: str, data: Chunks, *, content_type: str = "application/octet-stream",
              subjects: Iterable[str] = ()) -> ArtifactRef:
        """Stream ``data`` into ``key`` (replacing an older artifact there: a resumed job
        writes its artifact again). The artifact appears only when whole."""

    def stat(self, key: str) -> ArtifactRef | None: ...

    def read(self, key: str) -> Iterator[bytes]:
        """The artifact's bytes in chunks; ObjectNotFound when missing. Close the iterator
        (or exhaust it) to release the connection."""

    def delete(self, key: str) -> None:
        """Remove the artifact and its sidecar; missing is fine."""

    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        """Every artifact's metadata under ``prefix``, including that of a write a crash
        interrupted (size 0), so that expiry and erasure clean those up too."""


class _Hashing:
    """Counts and hashes chunks as they pass."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> bytes:
        self.sha.update(chunk)
        self.size += len(chunk)
        return chunk


def _chunks(data: Chunks) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray)):
        raise TypeError("pass an iterator of chunks or a binary file, not one bytes object")
    reader = getattr(data, "read", None)
    if callable(reader):
        while chunk := reader(READ_CHUNK):
            yield bytes(chunk)
        return
    for chunk in data:  # not IO: an iterable of bytes
        if chunk:
            yield bytes(chunk)


def _meta(key: str, h: _Hashing, content_type: str, subjects: Iterable[str]) -> ArtifactRef:
    return ArtifactRef(key, h.size, h.sha.hexdigest(), content_type, datetime.now(UTC),
                       tuple(sorted(set(subjects))))


# -- embedded: a folder ----------------------------------------------------------------


class LocalWorkArea:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        private_dir(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _atomic(self, path: Path, chunks: Iterator[bytes]) -> None:
        private_dir(path.parent)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def write(self, key: str, data: Chunks, *, content_type: str = "application/octet-stream",
              subjects: Iterable[str] = ()) -> ArtifactRef:
        path = self._path(key)
        h = _Hashing()
        try:
            # Sidecar first: an artifact never exists without the subjects erasure needs.
            ref = _meta(key, h, content_type, subjects)
            self._atomic(path.with_name(path.name + META_SUFFIX),
                         iter([json.dumps(ref.to_json()).encode()]))
            self._atomic(path, (h.feed(c) for c in _chunks(data)))
            ref = _meta(key, h, content_type, subjects)
            self._atomic(path.with_name(path.name + META_SUFFIX),
                         iter([json.dumps(ref.to_json()).encode()]))
        except OSError as exc:
            raise StoreError(f"write working-area artifact {key}: {exc}") from exc
        return ref

    def stat(self, key: str) -> ArtifactRef | None:
        path = self._path(key)
        try:
            if not path.exists():
                return None
            return ArtifactRef.from_json(
                json.loads(path.with_name(path.name + META_SUFFIX).read_bytes()))
        except (OSError, ValueError, KeyError):
            return None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"working-area artifact {key}: not found") from exc
        return _file_chunks(handle)

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, path.with_name(path.name + META_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        if not self.root.exists():
            return
        for meta in sorted(self.root.rglob(f"*{META_SUFFIX}")):
            key = meta.relative_to(self.root).as_posix()[: -len(META_SUFFIX)]
            if key.startswith(prefix) and not meta.name.startswith("."):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    yield ArtifactRef.from_json(json.loads(meta.read_bytes()))

    def sweep_partial(self, older_than_s: float = 86400.0) -> int:
        """Remove temp files a killed writer left behind."""
        removed = 0
        now = datetime.now(UTC).timestamp()
        for tmp in self.root.rglob(".*.tmp") if self.root.exists() else ():
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
        return removed


def _file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


# -- S3: an unlocked, unversioned bucket ----------------------------------------------


class _IterReader(io.RawIOBase):
    """A read-only file over an iterator of chunks, for minio's multipart upload."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("unbounded read of a streamed artifact")
        while len(self._buf) < size:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        with memoryview(self._buf) as view:  # one copy of the part, not two (slice, bytes)
            out = bytes(view[:size])
        del self._buf[:size]
        return out


class S3WorkArea:
    name = "s3"

    def __init__(self, client: Minio, bucket: str, *, evidence_bucket: str | None = None,
                 state_bucket: str | None = None, backstop_days: int | None = None) -> None:
        if bucket in (evidence_bucket, state_bucket):
            # Evidence: locked. State: its keys would mix with artifacts and the sweeps.
            raise BucketMisconfigured(
                f"the working-area bucket {bucket!r} must be neither the evidence nor the "
                "state bucket (set ARCHIVER_WORKAREA_BUCKET)")
        self._client = client
        self.bucket = bucket
        self.backstop_days = backstop_days

    def ensure(self) -> None:
        with translate(f"create working-area bucket {self.bucket}"):
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
            versioning = self._client.get_bucket_versioning(self.bucket)
            lock = self._lock_enabled()
        if lock:
            raise BucketMisconfigured(
                f"working-area bucket {self.bucket!r} has Object Lock: decrypted artifacts "
                "there could not be deleted on erasure")
        if versioning.status in ("Enabled", "Suspended"):
            raise BucketMisconfigured(
                f"working-area bucket {self.bucket!r} is versioned: deleted artifacts would "
                "survive as noncurrent versions")
        if self.backstop_days is not None:
            self._lifecycle(self.backstop_days)

    def _lifecycle(self, days: int) -> None:
        """A lifecycle rule behind the sweep: the store itself expires artifacts a day after
        the sweep should have (if the sweep never ran), and aborts multipart uploads a
        killed writer left (AWS; MinIO drops that element and cleans stale uploads itself
        after 24 h)."""
        from minio.commonconfig import ENABLED, Filter
        from minio.lifecycleconfig import (
            AbortIncompleteMultipartUpload,
            Expiration,
            LifecycleConfig,
            Rule,
        )

        rule = Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id="wa-workarea-expiry",
                    expiration=Expiration(days=days),
                    abort_incomplete_multipart_upload=AbortIncompleteMultipartUpload(
                        days_after_initiation=1))
        with translate(f"set working-area lifecycle on {self.bucket}"):
            self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig([rule]))

    def lifecycle_days(self) -> int | None:
        """The expiration days of the bucket's lifecycle rule (None without one)."""
        with translate(f"read working-area lifecycle of {self.bucket}"):
            config = self._client.get_bucket_lifecycle(self.bucket)
        if config is None:
            return None
        for rule in config.rules:
            if rule.rule_id == "wa-workarea-expiry" and rule.expiration is not None:
                days: int | None = rule.expiration.days
                return days
        return None

    def _lock_enabled(self) -> bool:
        from minio.error import S3Error

        try:
            self._client.get_object_lock_config(self.bucket)
        except S3Error as exc:
            if exc.code == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        return True

    def write(self, key: str, data: Chunks, *, content_type: str = "application/octet-stream",
              subjects: Iterable[str] = ()) -> ArtifactRef:
        check_key(key)
        h = _Hashing()
        pending = _meta(key, h, content_type, subjects)
        with translate(f"write working-area artifact {key}"):
            self._put_meta(pending)  # before the bytes: erasure must always find them
            reader = _IterReader(h.feed(c) for c in _chunks(data))
            self._client.put_object(self.bucket, key, cast(BinaryIO, reader), length=-1,
                                    part_size=PART_SIZE, content_type=content_type,
                                    num_parallel_uploads=1)  # one part in memory at a time
            ref = _meta(key, h, content_type, subjects)
            self._put_meta(ref)
        return ref

    def _put_meta(self, ref: ArtifactRef) -> None:
        body = json.dumps(ref.to_json()).encode()
        self._client.put_object(self.bucket, ref.key + META_SUFFIX, io.BytesIO(body), len(body),
                                content_type="application/json")

    def stat(self, key: str) -> ArtifactRef | None:
        check_key(key)
        try:
            with translate(f"stat working-area artifact {key}"):
                self._client.stat_object(self.bucket, key)
                response = self._client.get_object(self.bucket, key + META_SUFFIX)
                try:
                    doc = json.loads(response.read())
                finally:
                    response.close()
                    response.release_conn()
        except ObjectNotFound:
            return None
        return ArtifactRef.from_json(doc)

    def read(self, key: str) -> Iterator[bytes]:
        check_key(key)
        with translate(f"read working-area artifact {key}"):
            response = self._client.get_object(self.bucket, key)
        return self._stream(key, response)

    def _stream(self, key: str, response: Any) -> Iterator[bytes]:
        try:
            with translate(f"read working-area artifact {key}"):
                yield from response.stream(READ_CHUNK)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        check_key(key)
        with translate(f"delete working-area artifact {key}"):
            self._client.remove_object(self.bucket, key)
            self._client.remove_object(self.bucket, key + META_SUFFIX)

    def list(self, prefix: str = "") -> Iterator[ArtifactRef]:
        with translate(f"list working area {prefix}"):
            names = [o.object_name for o in
                     self._client.list_objects(self.bucket, prefix=prefix, recursive=True)]
        for name in names:
            if name and name.endswith(META_SUFFIX):
                try:
                    with translate(f"read working-area metadata {name}"):
                        response = self._client.get_object(self.bucket, name)
                        try:
                            doc = json.loads(response.read())
                        finally:
                            response.close()
                            response.release_conn()
                except ObjectNotFound:
                    continue
                yield ArtifactRef.from_json(doc)
