"""Against real MinIO: a legal hold keeps a version past its retain-until, covers a record
that arrived after the hold was placed, and disposition removes every version (no delete
marker) of what is expired and unheld, with tombstones in the log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.ledger.entry import EntryKind
from archiver.ledger.verify import verify_archive
from archiver.retention.common import iter_records, resolve_subject
from tests.support.retention import (
    PHONE_NUMBER_ID,
    SHORT_DEFAULT,
    Msg,
    app_on,
    deliver,
    log_entries,
    now,
    s3_overrides,
    token,
)

pytestmark = pytest.mark.integration

HELD = "447700900001"
FREE = "447700900002"


def _records_of(runtime: Any, subject: str) -> list[Any]:
    return [r for r in iter_records(runtime.objects) if r.subject == subject]


def test_hold_outlives_expiry_covers_later_arrivals_and_disposition_leaves_nothing(
    tmp_path: Path, s3_endpoint: Any
) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "default.yaml").write_text(SHORT_DEFAULT)
    expiry = now() + 20  # margin for a loaded machine: all steps before the sleep must fit
    with app_on(tmp_path, **s3_overrides(s3_endpoint, policy_dir=policy_dir)) as (client, rt):
        deliver(client, rt, [Msg(HELD, "held before", expiry)])
        deliver(client, rt, [Msg(FREE, "free one", expiry)])
        held_subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, HELD)
        free_subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, FREE)

        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL), json={
            "case_id": "case-7", "contact": HELD, "phone_number_id": PHONE_NUMBER_ID})
        assert r.status_code == 201, r.text
        hold = r.json()
        assert hold["status"] == "open" and hold["held_by_kind"]["record"] == 1
        assert hold["held_by_kind"]["raw"] == 1
        assert client.post("/v1/holds", headers=token(rt, Role.AUDITOR),
                           json={"contact": HELD, "phone_number_id": PHONE_NUMBER_ID}
                           ).status_code == 403

        # Arrives after the hold: held by the processor's hook, record and raw batch.
        deliver(client, rt, [Msg(HELD, "held after", expiry)])
        held = _records_of(rt, held_subject)
        assert len(held) == 2
        for rec in held:
            assert rt.objects.stat(rec.key, rec.version_id).legal_hold
            raw_key, raw_version, _ = rec.raw
            assert rt.objects.stat(raw_key, raw_version).legal_hold
        detail = client.get(f"/v1/holds/{hold['id']}", headers=token(rt, Role.COMPLIANCE_OFFICER))
        assert detail.json()["held_by_kind"]["record"] == 2

        free = _records_of(rt, free_subject)
        assert len(free) == 1
        time.sleep(max(0.0, expiry - time.time()) + 1.5)

        job = rt.retention.disposition
        dry = job.run(dry_run=True)
        assert {d.key for d in dry.disposed} == {free[0].key}
        report = job.run()
        assert [d.key for d in report.disposed] == [free[0].key]
        assert report.held >= 2

        # Nothing of the disposed record is left: no version, no delete marker.
        assert list(rt.objects.list_versions(free[0].key)) == []
        for rec in held:  # past retain-until, still there because of the hold
            info = rt.objects.stat(rec.key, rec.version_id)
            assert info.retention is not None
            assert info.retention.retain_until.timestamp() < time.time()
        entries = log_entries(rt)
        disposed = [e for e in entries if e.kind is EntryKind.DISPOSED]
        assert [(e.key, e.version_id) for e in disposed] == [(free[0].key, free[0].version_id)]
        stones = [e for e in entries if e.kind is EntryKind.TOMBSTONE]
        assert stones and stones[-1].fields["sha256"] == disposed[0].fields["tombstone_sha256"]
        stone_bytes = rt.objects.get(stones[-1].key or "", stones[-1].version_id or "")
        assert free[0].key.encode() in stone_bytes
        assert rt.index.get(free[0].record_id) is None

        # Release: hold lifted, logged, and the next run disposes the held records too.
        r = client.delete(f"/v1/holds/{hold['id']}", headers=token(rt, Role.ADMIN))
        assert r.status_code == 200 and r.json()["status"] == "released"
        for rec in held:
            assert not rt.objects.stat(rec.key, rec.version_id).legal_hold
        released = [e for e in log_entries(rt) if e.kind is EntryKind.HOLD_RELEASED]
        assert {(e.key, e.version_id) for e in released} >= {(h.key, h.version_id) for h in held}
        report = job.run()
        assert {d.key for d in report.disposed if d.kind == "record"} == {h.key for h in held}
        for rec in held:
            assert list(rt.objects.list_versions(rec.key)) == []
        assert list(rt.objects.list_versions("records/")) == []
        # Raw batches keep their own retention: still there, nothing disposed early.
        assert [v for v in rt.objects.list_versions("raw/") if v.is_delete_marker] == []
        # verify agrees: disposed versions absent, tombstones present, holds as logged.
        rt.audit.flush()  # an audit batch being written has its object before its leaves
        findings = verify_archive(rt.log, rt.objects, [], lock_check="all").findings
        assert [f for f in findings if not f.kind.startswith("checkpoint")] == []
        rt.audit.flush()
        events = [e["event"] for e in rt.audit.events()]
        assert "hold:placed" in events and "hold:released" in events


def test_release_keeps_versions_another_open_hold_covers(tmp_path: Path, s3_endpoint: Any) -> None:
    with app_on(tmp_path, **s3_overrides(s3_endpoint)) as (client, rt):
        deliver(client, rt, [Msg(HELD, "two holds", now())])
        auth = token(rt, Role.ADMIN)
        first = client.post("/v1/holds", headers=auth, json={
            "contact": HELD, "phone_number_id": PHONE_NUMBER_ID}).json()
        rec = _records_of(rt, resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, HELD))[0]
        second = client.post("/v1/holds", headers=auth, json={
            "conversation": rec.header["conversation"], "case_id": "other"}).json()
        assert second["held_versions"] >= 2
        out = client.delete(f"/v1/holds/{first['id']}", headers=auth).json()
        assert out["released_count"] == 0 and out["kept_by_other_holds"] >= 2
        assert rt.objects.stat(rec.key, rec.version_id).legal_hold
        assert rt.keys.protections(rec.subject)  # the other hold still protects the key
        client.delete(f"/v1/holds/{second['id']}", headers=auth)
        assert not rt.objects.stat(rec.key, rec.version_id).legal_hold
        assert rt.keys.protections(rec.subject) == {}
        listed = client.get("/v1/holds", headers=auth).json()["holds"]
        assert {h["status"] for h in listed} == {"released"}
