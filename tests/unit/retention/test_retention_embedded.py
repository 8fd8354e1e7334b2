"""Retention on the embedded backends (local folder store, SQLite): ``policy explain``,
``retention apply`` (extends, never shortens), disposition with a two-person review, raw
batches disposed once no record remains. Time moves by the local store's clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver import cli
from archiver.auth import Role
from archiver.ledger.entry import EntryKind
from archiver.retention.common import iter_records
from archiver.settings import get_settings
from tests.support.retention import Msg, app_on, deliver, log_entries, now, token

REVIEW_DEFAULT = """\
id: default
title: "Test default: one day, two-person review"
kind: default
citations:
  - source: "test"
    section: "tests/unit/retention"
    summary: "review before disposal"
retention:
  period: P1D
  clock_starts: capture_time
lock_mode: GOVERNANCE
disposition:
  action: review
  two_person_approval: true
erasure: allowed
"""


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    monkeypatch.setenv("ARCHIVER_DATA_DIR", str(data))
    monkeypatch.setenv("ARCHIVER_LOCK_MODE", "GOVERNANCE")
    monkeypatch.setenv("ARCHIVER_INLINE_WORKERS", "false")
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_policy_explain_says_which_policy_and_why(
    tmp_path: Path, cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        deliver(client, rt, [Msg("447700900021", "explain me", now())])
        record = next(iter_records(rt.objects))
    assert cli.main(["policy", "explain", record.record_id]) == 0
    out = capsys.readouterr().out
    assert f"record:          {record.record_id}" in out
    assert "governing:       default" in out
    assert "conflict rule:   default policy (nothing else matched)" in out
    assert "store lock:      GOVERNANCE" in out
    assert cli.main(["policy", "explain", "r_doesnotexist"]) == 2
    assert cli.main(["holds", "list"]) == 0
    capsys.readouterr()
    assert cli.main(["dispose", "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True and report["disposed"] == [] and report["not_expired"] >= 1
    assert cli.main(["retention", "apply", "--dry-run"]) == 0


def test_retention_apply_extends_and_never_shortens(tmp_path: Path) -> None:
    base: dict[str, Any] = {"inline_workers": False}
    with app_on(tmp_path, **base) as (client, rt):
        deliver(client, rt, [Msg("447700900022", "keep me longer", now())])
        record = next(iter_records(rt.objects))
        first = rt.objects.stat(record.key, record.version_id).retention
        assert first is not None
    with app_on(tmp_path, **base, policy_params="default.period=P2Y") as (_, rt):
        report = rt.retention.applier.run()
        assert [e["key"] for e in report.extended] == [record.key]
        now_lock = rt.objects.stat(record.key, record.version_id).retention
        assert now_lock is not None
        assert now_lock.retain_until > first.retain_until + timedelta(days=300)
        extended = [e for e in log_entries(rt) if e.kind is EntryKind.RETENTION_EXTENDED]
        assert [(e.key, e.fields["policy"]) for e in extended] == [(record.key, "default")]
        assert rt.retention.applier.run().extended == []  # idempotent
    with app_on(tmp_path, **base, policy_params="default.period=P6M") as (_, rt):
        assert rt.retention.applier.run().extended == []  # never shortens
        after = rt.objects.stat(record.key, record.version_id).retention
        assert after is not None and after.retain_until == now_lock.retain_until


def test_review_needs_two_people_then_record_and_raw_batch_go(tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "default.yaml").write_text(REVIEW_DEFAULT)
    later = datetime.now(UTC) + timedelta(days=3)
    with app_on(tmp_path, inline_workers=False, policy_dir=policy_dir,
                raw_retention_days=2) as (client, rt):
        deliver(client, rt, [Msg("447700900023", "review me", now())])
        record = next(iter_records(rt.objects))
        raw_key, raw_version, _ = record.raw
        job = rt.retention.disposition
        assert job.run().disposed == []  # not expired yet
        rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
        job.clock = lambda: later
        report = job.run()
        assert report.disposed == [] and report.queued_for_review == [record.record_id]

        # Approvers are persons (issue 15 #5): each token is bound to one.
        first, second = (
            {"Authorization": "Bearer " + rt.tokens.create(role=role, name=role.value,
                                                           person=person)[0]}
            for role, person in ((Role.ADMIN, "p-first"), (Role.COMPLIANCE_OFFICER, "p-second"))
        )
        listed = client.get("/v1/disposition/reviews", headers=first).json()["reviews"]
        assert [r["record_id"] for r in listed] == [record.record_id] and listed[0]["required"] == 2
        url = f"/v1/disposition/reviews/{record.record_id}/approve"
        assert client.post(url, headers=first).json()["status"] == "pending"
        again = client.post(url, headers=first)
        assert again.status_code == 409 and again.json()["error"]["code"] == "review_same_approver"
        assert client.post(url, headers=token(rt, Role.LEGAL)).status_code == 403
        assert client.post(url, headers=second).json()["status"] == "approved"

        report = job.run()
        kinds = sorted(d.kind for d in report.disposed)
        assert kinds == ["raw", "record"]
        assert list(rt.objects.list_versions(record.key)) == []
        assert list(rt.objects.list_versions(raw_key)) == []
        assert rt.state.get("capkeys/" + raw_key.rsplit("/", 1)[-1]) is None
        disposed = {(e.key, e.version_id) for e in log_entries(rt) if e.kind is EntryKind.DISPOSED}
        assert disposed == {(record.key, record.version_id), (raw_key, raw_version)}
        assert rt.index.get(record.record_id) is None


def test_lease_keeps_disposition_single(tmp_path: Path) -> None:
    from archiver.jobs.lease import Lease

    with app_on(tmp_path, inline_workers=False) as (_, rt):
        other = Lease(rt.state, "disposition", ttl=60)
        assert other.acquire()
        assert rt.retention.disposition.run().ran is False
        other.release()
        assert rt.retention.disposition.run().ran is True
