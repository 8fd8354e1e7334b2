"""An erasure requested while processing lags behind a captured delivery of the person
must not leave that delivery readable (attack-4b). The erasure decided on the records and
slots processed so far and said ``done``; the backlog delivery (sent before the request)
was then processed under a fresh key: its text readable, searchable, its raw slot keyed.
Now the erasure waits a moment for every batch captured before the request, and answers
``erasure_pending`` (nothing destroyed) if one is still not processed."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.auth import Role
from tests.support.apps import sign
from tests.support.erasure import BACKENDS, ERASE, archive, recoverable
from tests.support.retention import PHONE_NUMBER_ID, Msg, body_for, deliver, now, token


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_erasure_waits_for_deliveries_captured_before_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        body = body_for([Msg(ERASE, "backlog zqxbacklog", now())])
        r = client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        rt.retention.erasure.backlog_wait_s = 0.2  # nobody processes here: do not wait long

        def erase() -> tuple[int, str, str]:
            r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                            json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
            return r.status_code, r.json().get("error", {}).get("code", ""), r.text

        status, code, text = erase()  # the delivery is captured, not processed
        assert (status, code) == (409, "erasure_pending"), text
        assert any(w.startswith("content of") for w in recoverable(rt, "zqxplanned"))

        assert rt.processor.sweep()
        rt.follower.run_to_end()
        status, _code, text = erase()
        assert status == 200, text
        assert recoverable(rt, "zqxbacklog") == [] and recoverable(rt, "zqxplanned") == []
