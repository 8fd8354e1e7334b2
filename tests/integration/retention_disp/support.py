"""Helpers for the candidate-driven disposition tests: a counting wrapper around the real
evidence store (every call goes through to it), a job built on that wrapper, and record
look-ups by message time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from archiver.retention.common import StoredRecord, iter_records
from archiver.retention.disposition import DispositionJob
from archiver.runtime import Runtime
from archiver.store.port import ObjectInfo, ObjectStore, VersionEntry


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
