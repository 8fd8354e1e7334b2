"""Fixtures for the store contract suites: one harness per adapter.

PostgreSQL comes from ``ARCHIVER_TEST_PG_DSN`` (``scripts/services env``); missing fails.

The S3 address comes from ``scripts/services env`` (ARCHIVER_TEST_S3_*). Missing under
``CI=true`` fails; otherwise the S3 cases skip. (Local stand-in for the shared
``s3_endpoint`` fixture of tests/conftest.py, which did not exist yet.)
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from archiver.store._s3common import make_client
from archiver.store.local import LocalObjectStore, write_delete_marker
from archiver.store.port import ObjectStore, StateStore
from archiver.store.s3 import S3ObjectStore, create_locked_bucket
from archiver.store.state_pg import PgStateStore
from archiver.store.state_s3 import S3StateStore
from archiver.store.state_sqlite import SqliteStateStore
from tests.support.pg import pg_dsn


@dataclass(frozen=True)
class S3Env:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, **kw: Any) -> Minio:
        return make_client(self.endpoint, self.access_key, self.secret_key, secure=False, **kw)

    def raw_client(self) -> Minio:
        """A stock minio client (default pool), to talk to the server without our adapter."""
        return Minio(self.endpoint, self.access_key, self.secret_key, secure=False)


def _s3_env() -> S3Env:
    names = (
        "ARCHIVER_TEST_S3_ENDPOINT",
        "ARCHIVER_TEST_S3_ACCESS_KEY",
        "ARCHIVER_TEST_S3_SECRET_KEY",
    )
    values = [os.environ.get(n, "") for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if not v]
    if missing:
        msg = f'MinIO not configured ({", ".join(missing)}); run: eval "$(scripts/services env)"'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return S3Env(*values)


@pytest.fixture(scope="session")
def s3_env() -> S3Env:
    return _s3_env()


@pytest.fixture(scope="module")
def locked_bucket(s3_env: S3Env) -> str:
    """A fresh Object-Lock bucket per test module (left behind: its versions are locked)."""
    bucket = f"t-{uuid.uuid4().hex[:20]}"
    create_locked_bucket(s3_env.client(), bucket)
    return bucket


@pytest.fixture(scope="module")
def plain_bucket(s3_env: S3Env) -> Iterator[str]:
    bucket = f"s-{uuid.uuid4().hex[:20]}"
    S3StateStore(s3_env.client(), bucket).ensure_bucket()
    yield bucket
    raw = s3_env.raw_client()
    for obj in raw.list_objects(bucket, recursive=True):
        raw.remove_object(bucket, obj.object_name)
    raw.remove_bucket(bucket)


@dataclass
class ObjectHarness:
    """The store under test plus the back doors a contract case needs."""

    kind: str
    store: ObjectStore
    prefix: str  # unique per test, so tests sharing a bucket never collide
    add_delete_marker: Callable[[str], None]  # a marker on top of an existing key
    make_marker_only: Callable[[str], None]  # a key whose only version is a delete marker
    raw_delete: Callable[[str, str], None] | None  # S3 only: the stock client's delete
    root: Path | None = None


@pytest.fixture(params=["local", "s3"])
def object_harness(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectHarness:
    prefix = f"{uuid.uuid4().hex[:8]}/"
    if request.param == "local":
        root = tmp_path / "store"
        store = LocalObjectStore(root)
        return ObjectHarness(
            kind="local",
            store=store,
            prefix=prefix,
            add_delete_marker=lambda key: (write_delete_marker(root, key), None)[1],
            make_marker_only=lambda key: (write_delete_marker(root, key), None)[1],
            raw_delete=None,
            root=root,
        )
    env: S3Env = request.getfixturevalue("s3_env")
    bucket: str = request.getfixturevalue("locked_bucket")
    raw = env.raw_client()

    def raw_delete(key: str, version_id: str) -> None:
        raw.remove_object(bucket, key, version_id=version_id)

    def make_marker_only(key: str) -> None:
        # MinIO adds no marker for a key that never existed: write an unlocked version
        # (the bucket has no default retention), hide it behind a marker, then remove it.
        put = raw.put_object(bucket, key, io.BytesIO(b"gone"), 4)
        raw.remove_object(bucket, key)
        raw.remove_object(bucket, key, version_id=put.version_id)

    return ObjectHarness(
        kind="s3",
        store=S3ObjectStore(env.client(), bucket),
        prefix=prefix,
        # An unversioned DELETE on a versioned bucket only adds a delete marker.
        add_delete_marker=lambda key: raw.remove_object(bucket, key),
        make_marker_only=make_marker_only,
        raw_delete=raw_delete,
    )


@pytest.fixture(params=["sqlite", "s3", "postgres"])
def state_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        store = SqliteStateStore(tmp_path / "state.sqlite3")
        yield store
        store.close()
        return
    if request.param == "postgres":
        # A table of its own per test: nothing shared, dropped afterwards.
        table = f"t_{uuid.uuid4().hex[:16]}"
        pg = PgStateStore(pg_dsn(), table=table)
        yield pg
        pg._conn().execute(f"DROP TABLE {table}; DROP SEQUENCE {table}_token")
        pg.close()
        return
    env: S3Env = request.getfixturevalue("s3_env")
    bucket: str = request.getfixturevalue("plain_bucket")
    yield _PrefixedState(S3StateStore(env.client(), bucket), f"{uuid.uuid4().hex[:8]}/")


class _PrefixedState:
    """Gives each test its own key space inside the module's shared bucket."""

    def __init__(self, inner: S3StateStore, prefix: str) -> None:
        self._inner = inner
        self._p = prefix
        self.name = inner.name

    def ping(self) -> None:
        self._inner.ping()

    def get(self, key: str) -> Any:
        return self._inner.get(self._p + key)

    def put(self, key: str, value: bytes, **kw: Any) -> str:
        return self._inner.put(self._p + key, value, **kw)

    def delete(self, key: str, **kw: Any) -> None:
        self._inner.delete(self._p + key, **kw)

    def list(self, prefix: str = "") -> Iterator[str]:
        for key in self._inner.list(self._p + prefix):
            yield key[len(self._p) :]
