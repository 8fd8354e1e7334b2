"""A report over some numbers holds nothing of the others: it is read by tokens scoped to
those numbers. Seeded: every record is ``PN``'s; a hold placed on ``PN`` and an erasure
procedure of a ``PN`` customer. A report over ``SILENT`` (no records) must show no hold,
no erasure, no raw capture and no raw batch's lock; one over ``PN`` shows them; one over
every number too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.keyspace import ERASURES_PREFIX
from archiver.reporting.gather import ReportRequest
from reports.facts import Regulation
from tests.integration.reporting.support import PN, SILENT, seeded_archive

pytestmark = pytest.mark.integration
SUBJECT = "s_" + "a" * 32


def test_scoped_report_shows_no_other_numbers_holds_erasures_or_captures(
        request: Any, tmp_path: Path) -> None:
    with seeded_archive(request, tmp_path, "embedded") as s:
        rt = s.runtime
        r = s.client.post("/v1/holds", json={"query": "Hello", "phone_number_id": PN,
                                             "reason": "case 7"}, headers=s.admin)
        assert r.status_code == 201, r.text
        when = (s.start + (s.end - s.start) / 2).isoformat()
        rt.state.put(f"{ERASURES_PREFIX}{SUBJECT}/e1", json.dumps({
            "v": 1, "id": "e1", "status": "done", "subject": SUBJECT,
            "phone_number_id": PN, "when": when, "finished_at": when}).encode())

        def gather(*numbers: str) -> Any:
            return rt.reports.gatherer.gather(
                ReportRequest(Regulation.GDPR, s.start, s.end, numbers))

        silent, mine, every = gather(SILENT), gather(PN), gather()
        def erased(facts: Any) -> list[str]:  # the seeded procedure (the refusal of C aside)
            return [e.request_id for e in facts.erasures if e.subject == SUBJECT]

        assert every.raw_captures > 0 and len(every.holds) == 1 and erased(every) == ["e1"]
        assert mine.raw_captures == every.raw_captures  # every capture gave a PN record
        assert len(mine.holds) == 1 and erased(mine) == ["e1"]
        assert silent.records == ()
        assert silent.raw_captures == 0, silent.raw_captures

        def raw_locks(facts: Any) -> int:  # raw batches whose lock the report reads
            return sum(c.population for c in facts.object_lock_checks if c.kind == "raw")

        assert raw_locks(every) > 0 and raw_locks(mine) == raw_locks(every)
        assert raw_locks(silent) == 0, silent.object_lock_checks
        assert silent.holds == (), silent.holds
        assert silent.erasures == (), silent.erasures
