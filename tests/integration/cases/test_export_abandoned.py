"""An export whose runner died on its last attempt is failed by the next runner
(``job_abandoned``) without the export's code running: its case's chain of custody then
showed ``export_requested`` and never an end. Every export must be accounted for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.auth import Role
from archiver.export.job import KIND
from archiver.jobs.model import Job
from tests.integration.cases.seed import N1, Archive
from tests.support.apps import embedded_settings, running_app


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    settings = embedded_settings(tmp_path, inline_workers=False, jobs_heartbeat_ttl_s=0.5,
                                 jobs_max_attempts=1)  # fmt: skip
    with running_app(settings) as (client, runtime):
        yield Archive(client, runtime)


def test_an_abandoned_export_is_in_the_chain_of_custody(archive: Archive) -> None:
    a = archive
    a.seed()
    legal = a.token(Role.LEGAL, [N1.pnid])
    r = a.client.post("/v1/cases", headers=legal, json={
        "name": "Abandoned", "matter_number": "M-1", "scope": {"query": "merger"}})  # fmt: skip
    cid = r.json()["id"]
    r = a.client.post(f"/v1/cases/{cid}/exports", headers=legal, json={})
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    service = a.rt.export_jobs()
    # A runner claimed it and died at once (no heartbeat since): its only attempt is used.
    past = datetime.now(UTC) - timedelta(seconds=30)
    service.store.update(KIND, export_id, lambda j: Job.claim(j, "dead-runner", past))
    service.poll()
    view = a.client.get(f"/v1/exports/{export_id}", headers=legal).json()
    assert view["state"] == "failed", view
    assert [e["code"] for e in view["errors"]] == ["job_abandoned"], view["errors"]
    entries = a.client.get(f"/v1/cases/{cid}/custody", headers=legal).json()["entries"]
    ends = [e for e in entries if e["action"] == "export_finished"
            and e["details"]["export_id"] == export_id]  # fmt: skip
    assert len(ends) == 1, [e["action"] for e in entries]
    assert ends[0]["details"]["state"] == "failed"
    assert ends[0]["details"]["error"] == "job_abandoned"
    a.rt.audit.flush()
    events = a.client.get("/v1/audit", headers=a.token(Role.ADMIN),
                          params={"size": 1000}).json()["events"]  # fmt: skip
    assert any(e["event"] == "export:finished"
               and (e.get("details") or {}).get("export_id") == export_id
               for e in events), "no export:finished audit event"  # fmt: skip
