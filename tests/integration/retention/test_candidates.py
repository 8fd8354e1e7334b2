"""Disposition picks its candidates from the proof log and touches the store only for them:
on the embedded store and on real MinIO, a run over many unexpired records reads (GET) only
the expired ones, a ``retention_extended`` leaf keeps a version out, and a version whose
``disposed`` leaf was logged before a crash is finished by the next run. On the embedded
store (its clock can move days ahead; raw batches are locked for at least a day), a raw
batch stays while one of its records remains and goes once all are gone."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.keyspace import DISPOSITION_CURSOR_KEY as CURSOR_KEY
from archiver.keyspace import DISPOSITION_JOURNAL_PREFIX as JOURNAL_PREFIX
from archiver.ledger.entry import EntryKind
from archiver.ledger.verify import verify_archive
from archiver.retention.apply import RetentionApplier
from archiver.retention.common import iter_records
from archiver.retention.expiry import candidates
from archiver.store.port import MIN_LOCK
from policies.model import Decision, RecordFacts
from tests.support.disposition import (
    CountingStore,
    SimulatedCrash,
    archive,
    counting_job,
    records_at,
    time_travel,
)
from tests.support.retention import (
    Msg,
    deliver,
    log_entries,
    now,
)

pytestmark = pytest.mark.integration

UNEXPIRED = 30
WHOLE_SCANS = {"", "records/", "raw/", "media/"}


class LongerFor:
    """The runtime's policy, except that the record with message time ``stamp`` is to be
    kept until ``until`` (as if an operator lengthened the policy covering it)."""

    def __init__(self, inner: Any, stamp: datetime, until: datetime) -> None:
        self.inner, self.stamp, self.until = inner, stamp, until

    def decision(self, facts: RecordFacts) -> Decision:
        decision: Decision = self.inner.decision(facts)
        return replace(decision, retain_until=self.until) if facts.message_time == self.stamp \
            else decision


@pytest.mark.parametrize("backend", ["embedded", "minio"])
def test_run_reads_only_expired_candidates_and_an_extension_keeps_one_out(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with archive(request, tmp_path, backend) as (client, rt):
        far = now() + 30 * 86400
        deliver(client, rt, [Msg("447700900041", f"keep {i}", far + i) for i in range(UNEXPIRED)])
        # After the slow part, and past the shortest lock a write takes (MIN_LOCK: S3
        # refuses a lock already passed), so that these records are locked until ``soon``.
        soon = now() + int(MIN_LOCK.total_seconds()) + 2
        deliver(client, rt, [Msg("447700900042", f"expire {i}", soon) for i in range(3)])
        deliver(client, rt, [Msg("447700900043", "extended", soon + 1)])
        expiring = records_at(rt, soon)
        (extended,) = records_at(rt, soon + 1)
        assert len(expiring) == 3

        # Lengthen one record's lock the real way: RetentionApplier logs retention_extended.
        until = datetime.now(UTC) + timedelta(days=400)
        stamp = datetime.fromtimestamp(soon + 1, UTC)
        applied = RetentionApplier(objects=rt.objects, log=rt.log,
                                   policy=LongerFor(rt.policy, stamp, until)).run()
        assert extended.key in {e["key"] for e in applied.extended}
        ext_leaves = [e for e in log_entries(rt) if e.kind is EntryKind.RETENTION_EXTENDED]
        assert (extended.key, extended.version_id) in {(e.key, e.version_id) for e in ext_leaves}

        time.sleep(max(0.0, soon + 1 - time.time()) + 1.5)
        wanted = {r.key for r in expiring}
        due = candidates(rt.log, datetime.now(UTC))
        assert {c.key for c in due.versions} == wanted  # the extended one is not a candidate

        store = CountingStore(rt.objects)
        report = counting_job(rt, store).run()
        assert {d.key for d in report.disposed} == wanted
        assert {d.kind for d in report.disposed} == {"record"}
        assert report.candidates == 3 and report.not_expired >= UNEXPIRED
        # Only the candidates were read: one GET and one stat per expired record, nothing
        # of the unexpired or extended records, and no listing of a whole area.
        assert store.gets == {"records": 3} and sorted(store.got) == sorted(wanted)
        assert store.stats["records"] == 3 and extended.key not in store.stated
        assert not WHOLE_SCANS & set(store.listed), store.listed
        for r in expiring:
            assert list(rt.objects.list_versions(r.key)) == []
        info = rt.objects.stat(extended.key, extended.version_id)
        assert info.retention is not None and info.retention.retain_until > datetime.now(UTC)
        assert len(list(iter_records(rt.objects))) == UNEXPIRED + 1

        # The next run looks again only at what the last one disposed (gone: a stat each),
        # and the one after that at nothing.
        again = CountingStore(rt.objects)
        second = counting_job(rt, again).run()
        assert second.disposed == [] and second.candidates == 3 and again.gets == {}
        third = CountingStore(rt.objects)
        assert counting_job(rt, third).run().candidates == 0
        assert third.gets == {} and third.stats == {}
        assert rt.state.get(CURSOR_KEY) is not None


def test_raw_batch_stays_while_one_of_its_records_remains(tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    with archive(request, tmp_path, "embedded", raw_retention_days=1) as (client, rt):
        t0 = now()
        deliver(client, rt, [Msg("447700900051", "goes", t0), Msg("447700900052", "held", t0 + 1)])
        deliver(client, rt, [Msg("447700900053", "alone", t0 + 2)])
        (gone,), (held,), (alone,) = records_at(rt, t0), records_at(rt, t0 + 1), \
            records_at(rt, t0 + 2)
        assert gone.raw is not None and held.raw is not None and alone.raw is not None
        shared_raw, alone_raw = gone.raw[:2], alone.raw[:2]
        assert held.raw[:2] == shared_raw and alone_raw != shared_raw
        rt.objects.set_legal_hold(held.key, held.version_id, True)

        store = CountingStore(rt.objects)
        job = counting_job(rt, store)
        time_travel(rt, job, days=3)
        report = job.run()
        got = {(d.kind, d.key) for d in report.disposed}
        assert got == {("record", gone.key), ("record", alone.key), ("raw", alone_raw[0])}
        assert report.held == 1
        assert rt.objects.stat(*shared_raw).key == shared_raw[0]  # its held record remains
        batch = shared_raw[0].rsplit("/", 1)[-1]
        assert rt.state.get("capkeys/" + batch) is not None
        assert rt.state.get("capkeys/" + alone_raw[0].rsplit("/", 1)[-1]) is None
        assert not WHOLE_SCANS & set(store.listed), store.listed

        rt.objects.set_legal_hold(held.key, held.version_id, False)
        report = job.run()
        assert {(d.kind, d.key) for d in report.disposed} == {("record", held.key),
                                                              ("raw", shared_raw[0])}
        assert list(rt.objects.list_versions("raw/")) == []
        assert list(rt.objects.list_versions("records/")) == []
        assert rt.state.get("capkeys/" + batch) is None
        rt.audit.flush()
        findings = verify_archive(rt.log, rt.objects, [], lock_check="all").findings
        assert [f for f in findings if not f.kind.startswith("checkpoint")] == []


def test_a_crash_before_the_delete_is_finished_later_even_after_a_hold(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with archive(request, tmp_path, "embedded") as (client, rt):
        t0 = now()
        deliver(client, rt, [Msg("447700900061", "crash", t0)])
        (rec,) = records_at(rt, t0)
        crashing = counting_job(rt, CountingStore(rt.objects, fail_deletes=1))
        time_travel(rt, crashing, days=2)
        with pytest.raises(SimulatedCrash):
            crashing.run()
        assert rt.objects.stat(rec.key, rec.version_id)  # journalled, still here
        # No leaf says it went (issue 15 §6: a disposed leaf only follows the delete).
        assert (rec.key, rec.version_id) not in {
            (e.key, e.version_id) for e in log_entries(rt) if e.kind is EntryKind.DISPOSED}
        assert list(rt.state.list(JOURNAL_PREFIX))  # the intent, for the next run
        assert rt.state.get(CURSOR_KEY) is None  # the crashed run saved no cursor

        rt.objects.set_legal_hold(rec.key, rec.version_id, True)  # a hold comes in between
        job = counting_job(rt, CountingStore(rt.objects))
        time_travel(rt, job, days=2)
        for _ in range(2):  # the first run cancels the journalled disposal, and keeps it
            report = job.run()
            assert report.disposed == [] and report.held == 1
        assert not list(rt.state.list(JOURNAL_PREFIX))
        assert EntryKind.DISPOSED not in {e.kind for e in log_entries(rt)}
        rt.objects.set_legal_hold(rec.key, rec.version_id, False)
        report = job.run()
        assert [(d.key, d.kind) for d in report.disposed] == [(rec.key, "record")]
        assert list(rt.objects.list_versions(rec.key)) == []
        assert job.run().candidates == 1 and job.run().candidates == 0
