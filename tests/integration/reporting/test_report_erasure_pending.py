"""An erasure answered ``erasure_pending`` (its shared slot not decidable yet: the index
lags behind it while a query hold is open) is no refusal: the signed report must not
count it as "refused for a retention obligation" (attack-4b). The audit event carries the
refusal's code; the report shows a pending request as pending, a real refusal by its own
reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.auth import Role
from archiver.reporting.gather import ReportRequest
from reports.facts import ErasureStatus, Regulation
from tests.support.erasure import ERASE, archive, shared_slot_behind_a_query_hold
from tests.support.retention import PHONE_NUMBER_ID, token


def test_a_pending_erasure_is_reported_pending_not_refused_for_an_obligation(
    tmp_path: Path,
) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        hold_id = shared_slot_behind_a_query_hold(client, rt)

        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409 and r.json()["error"]["code"] == "erasure_pending", r.text
        rt.follower.run_to_end()
        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409 and r.json()["error"]["code"] == "erasure_refused", r.text
        assert hold_id in r.text
        rt.audit.flush()

        start = datetime.now(UTC) - timedelta(days=1)
        facts = rt.reports.gatherer.gather(ReportRequest(
            Regulation.GDPR, start, start + timedelta(days=2), (PHONE_NUMBER_ID,)))
        by_status = sorted((e.status.value, e.reason or "") for e in facts.erasures)
        assert by_status == [(ErasureStatus.PENDING.value, "erasure_pending"),
                             (ErasureStatus.REFUSED.value, "legal_hold")], by_status

