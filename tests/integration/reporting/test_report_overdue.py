"""Storage limitation: records past their retain-until, under no hold and not disposed,
are listed as ``retention.disposal_overdue``; held ones and fresh ones are not."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.auth import Role
from archiver.reporting.gather import ReportRequest
from reports.compute import compute_report
from reports.facts import Regulation
from search.port import SearchRequest
from tests.support.retention import (
    PHONE_NUMBER_ID,
    SHORT_DEFAULT,
    Msg,
    app_on,
    deliver,
    token,
)

pytestmark = pytest.mark.integration


def test_overdue_records_unless_held(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(SHORT_DEFAULT)  # kept until the message time
    old = int(time.time()) - 3 * 86400
    fresh = int(time.time()) + 86400 * 30  # its retain-until is still ahead
    with app_on(tmp_path, policy_dir=policies, inline_workers=False) as (client, rt):
        deliver(client, rt, [Msg("447700900201", "old one", old),
                             Msg("447700900202", "old held", old + 10),
                             Msg("447700900203", "future", fresh)])
        docs = {h.doc["text"]: h.doc for h in rt.index.search(SearchRequest(size=10)).hits}
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL), json={
            "reason": "matter 7", "conversation": docs["old held"]["conversation"]})
        assert r.status_code in (200, 201), r.text
        rt.follower.catch_up()
        start = datetime.fromtimestamp(old - 3600, UTC)
        req = ReportRequest(Regulation.GDPR, start, start + timedelta(days=40),
                            (PHONE_NUMBER_ID,), sample_size=None)
        facts = rt.reports.gatherer.gather(req)
        overdue = facts.completeness.overdue_disposals
        assert overdue == (docs["old one"]["record_id"],)
        codes = {f.code.value: f for f in compute_report(facts).findings}
        assert codes["retention.disposal_overdue"].record_ids == overdue
