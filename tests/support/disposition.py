"""Helpers for the candidate-driven disposition tests: an archive with a short default
policy (embedded or MinIO), a counting wrapper around the real evidence store (every call
goes through to it), a job built on that wrapper, record look-ups by message time, and
moving the embedded store's clock ahead."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.retention.common import StoredRecord, iter_records
from archiver.retention.disposition import DispositionJob
from archiver.runtime import Runtime
from archiver.store.port import ObjectInfo, ObjectStore, VersionEntry
from tests.support.retention import SHORT_DEFAULT, app_on, s3_overrides


def _area(key: str) -> str:
    return key.split("/", 1)[0]


class CountingStore:
    """The real store, with its reads counted per top-level prefix (``records``, ``raw``…).
    ``fail_deletes``: that many ``delete_version`` calls raise first (a crash between the
    ``disposed`` leaf and the delete)."""

    def __init__(self, inner: ObjectStore, *, fail_deletes: int = 0) -> None:
        self.inner = inner
        self.gets: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.got: list[str] = []
        self.stated: list[str] = []
        self.listed: list[str] = []
        self.fail_deletes = fail_deletes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str, version_id: str) -> bytes:
        self.gets[_area(key)] += 1
        self.got.append(key)
        return self.inner.get(key, version_id)

    def stat(self, key: str, version_id: str) -> ObjectInfo:
        self.stats[_area(key)] += 1
        self.stated.append(key)
        return self.inner.stat(key, version_id)

    def list_versions(self, prefix: str = "") -> Iterator[VersionEntry]:
        self.listed.append(prefix)
        return self.inner.list_versions(prefix)

    def delete_version(self, key: str, version_id: str) -> None:
        if self.fail_deletes > 0:
            self.fail_deletes -= 1
            raise SimulatedCrash(f"crash before deleting {key}")
        self.inner.delete_version(key, version_id)


class SimulatedCrash(RuntimeError):
    pass


def counting_job(rt: Runtime, store: CountingStore) -> DispositionJob:
    """The runtime's disposition job, on ``store`` instead of the runtime's store."""
    base = rt.retention.disposition
    return DispositionJob(
        objects=store,  # type: ignore[arg-type]  # delegates every other call to the store
        state=rt.state, log=rt.log, index=rt.index, policy=rt.policy, holds=base.holds,
        lock_mode=base.lock_mode, log_retention_days=base.log_retention_days, clock=base.clock,
    )  # fmt: skip


def records_at(rt: Runtime, ts: int) -> list[StoredRecord]:
    """Message records whose message time is ``ts`` (epoch seconds)."""
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(ts, UTC)
    out = []
    for r in iter_records(rt.objects):
        occurred = r.header.get("occurred_at")
        if (
            isinstance(occurred, str)
            and r.header.get("kind") == "message"
            and datetime.fromisoformat(occurred.replace("Z", "+00:00")) == stamp
        ):
            out.append(r)
    return out


@contextmanager
def archive(request: pytest.FixtureRequest, tmp: Path, backend: str, **extra: Any
            ) -> Iterator[tuple[TestClient, Runtime]]:
    policy_dir = tmp / "policies"
    policy_dir.mkdir(exist_ok=True)
    (policy_dir / "default.yaml").write_text(SHORT_DEFAULT)
    if backend == "minio":
        overrides = s3_overrides(request.getfixturevalue("s3_endpoint"), policy_dir=policy_dir,
                                 **extra)
    else:
        overrides = {"inline_workers": False, "policy_dir": policy_dir,
                     "raw_retention_days": 2200, **extra}
    with app_on(tmp, **overrides) as pair:
        yield pair


def time_travel(rt: Runtime, job: Any, days: int) -> datetime:
    later = datetime.now(UTC) + timedelta(days=days)
    rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
    job.clock = lambda: later
    return later
