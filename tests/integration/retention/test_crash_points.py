"""Issue 15 §6: disposition is a journalled procedure whose next run finishes every step. A
crash at each step (intent, store delete, index delete, tombstone, log) is followed by a
clean run; then the version is gone, its index document is gone, exactly one ``disposed``
and one ``tombstone`` leaf name it, no journal entry is left and ``verify`` is clean. A
hold that lands between disposition's look and its delete keeps the version and leaves
no ``disposed`` leaf. Embedded store and real MinIO."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.keyspace import DISPOSITION_JOURNAL_PREFIX as JOURNAL_PREFIX
from archiver.ledger.entry import EntryKind
from archiver.ledger.verify import verify_archive
from archiver.retention.common import StoredRecord
from archiver.retention.disposition import CRASH_POINTS, DispositionJob
from archiver.runtime import Runtime
from tests.support.disposition import (
    CountingStore,
    SimulatedCrash,
    counting_job,
    records_at,
)
from tests.support.disposition_media import (
    archive_with,
    base_overrides,
    pass_expiry,
    post,
    present,
    soon,
    write_policy,
)
from tests.support.retention import SHORT_DEFAULT, Msg, body_for, log_entries

pytestmark = pytest.mark.integration

BACKENDS = ["embedded", "minio"]


@contextmanager
def one_expired(request: pytest.FixtureRequest, tmp: Path, backend: str
                ) -> Iterator[tuple[TestClient, Runtime, DispositionJob, StoredRecord]]:
    base = base_overrides(request, backend)
    with archive_with(tmp, base, write_policy(tmp, SHORT_DEFAULT)) as (client, rt):
        until = soon(backend)
        post(client, rt, body_for([Msg("447700900501", "crash me", until)]))
        (rec,) = records_at(rt, until)
        assert rt.index.get(rec.record_id) is not None
        yield client, rt, pass_expiry(rt, backend, until), rec


def leaves_naming(rt: Runtime, rec: StoredRecord, kind: EntryKind) -> int:
    return sum(1 for e in log_entries(rt)
               if e.kind is kind and (e.key, e.version_id) == (rec.key, rec.version_id))


def tombstones_for(rt: Runtime, rec: StoredRecord) -> int:
    wanted = f"{rec.key}@{rec.version_id}"
    count = 0
    for e in log_entries(rt):
        if e.kind is EntryKind.TOMBSTONE and e.key and e.version_id:
            body = rt.objects.get(e.key, e.version_id)
            what = json.loads(body)["what"]
            count += f"{what['key']}@{what['version_id']}" == wanted
    return count


def assert_finished(rt: Runtime, rec: StoredRecord) -> None:
    assert not present(rt, (rec.key, rec.version_id))
    assert rt.index.get(rec.record_id) is None  # no message text left in the index
    assert leaves_naming(rt, rec, EntryKind.DISPOSED) == 1
    assert tombstones_for(rt, rec) == 1
    assert list(rt.state.list(JOURNAL_PREFIX)) == []
    rt.audit.flush()
    findings = verify_archive(rt.log, rt.objects, [], lock_check="all").findings
    assert [f for f in findings if not f.kind.startswith("checkpoint")] == []


def crash_at(point: str) -> Any:
    def crash(where: str) -> None:
        if where == point:
            raise SimulatedCrash(point)
    return crash


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_step_is_finished_by_the_next_run(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, point: str
) -> None:
    with one_expired(request, tmp_path, backend) as (_client, rt, job, rec):
        job.crash = crash_at(point)
        with pytest.raises(SimulatedCrash):
            job.run()
        gone = point != "after_intent"
        assert present(rt, (rec.key, rec.version_id)) is not gone
        indexed = point in ("after_intent", "after_store_delete")
        assert (rt.index.get(rec.record_id) is not None) is indexed
        # The disposed leaf only once the version is gone (never before the delete).
        assert leaves_naming(rt, rec, EntryKind.DISPOSED) == (point == "after_log")
        assert len(list(rt.state.list(JOURNAL_PREFIX))) == 1

        job.crash = lambda _where: None
        report = job.run()
        assert report.resumed == 1
        assert_finished(rt, rec)
        assert job.run().disposed == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_crash_right_after_the_store_delete_leaves_no_text_in_the_index(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The store deletes, then the process dies (no hook: a store that dies after it)."""

    class DiesAfterDelete(CountingStore):
        def delete_version(self, key: str, version_id: str) -> None:
            self.inner.delete_version(key, version_id)
            raise SimulatedCrash(f"died after deleting {key}")

    with one_expired(request, tmp_path, backend) as (_client, rt, job, rec):
        dying = counting_job(rt, DiesAfterDelete(rt.objects))
        dying.clock = job.clock
        with pytest.raises(SimulatedCrash):
            dying.run()
        assert not present(rt, (rec.key, rec.version_id))
        job.run()
        assert_finished(rt, rec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hold_landing_just_before_the_delete_leaves_no_disposed_leaf(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    class HoldLandsFirst(CountingStore):
        def delete_version(self, key: str, version_id: str) -> None:
            self.inner.set_legal_hold(key, version_id, True)  # a legal hold, just now
            self.inner.delete_version(key, version_id)

    with one_expired(request, tmp_path, backend) as (_client, rt, job, rec):
        racing = counting_job(rt, HoldLandsFirst(rt.objects))
        racing.clock = job.clock
        report = racing.run()
        assert report.disposed == [] and report.held == 1
        assert present(rt, (rec.key, rec.version_id))
        assert leaves_naming(rt, rec, EntryKind.DISPOSED) == 0
        assert list(rt.state.list(JOURNAL_PREFIX)) == []
        assert rt.index.get(rec.record_id) is not None  # still archived, still findable


class LosesIndexDeletes:
    """The real index, except that deletes are lost (what a crash between the store delete
    and the index delete left behind before disposition was journalled)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delete_ids(self, ids: Any) -> int:
        return 0


def test_verify_finds_the_index_document_of_a_disposed_record(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with one_expired(request, tmp_path, "embedded") as (_client, rt, job, rec):
        assert not [f for f in rt.proofs.verify().findings if f.kind.startswith("index:")]
        lossy = DispositionJob(
            objects=rt.objects, state=rt.state, log=rt.log,
            index=LosesIndexDeletes(rt.index),  # type: ignore[arg-type]  # wraps the real one
            policy=rt.policy, holds=job.holds, lock_mode=job.lock_mode,
            log_retention_days=job.log_retention_days, clock=job.clock,
        )  # fmt: skip
        assert [d.key for d in lossy.run().disposed] == [rec.key]
        found = [f for f in rt.proofs.verify().findings if f.kind == "index:disposed_present"]
        assert [f.key for f in found] == [rec.key]
