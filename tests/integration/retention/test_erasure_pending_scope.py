"""An ``erasure_pending`` answer names no hold a number-scoped token does not cover
(attack-4b). The refusal said which query holds could not be run yet by id, in the
response and in the scoped token's own audit event, although a hold over every number is
not that token's to see (``erasure_refused`` already hides such holds)."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.auth import Role
from tests.support.apps import sign
from tests.support.erasure import ERASE, archive
from tests.support.retention import PHONE_NUMBER_ID, Msg, body_for, deliver, now, token

OTHER = "447700900078"


def test_a_pending_erasure_does_not_name_holds_outside_the_token_scope(tmp_path: Path) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        body = body_for([Msg(ERASE, "mine zqxmine", now()), Msg(OTHER, "zqxtheirs", now())])
        r = client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert rt.processor.sweep()  # logged, not indexed: the index lags
        # A hold over every number, placed by an unscoped token.
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"case_id": "c-q", "query": "zqxtheirs"})  # fmt: skip
        assert r.status_code == 201, r.text
        hold_id = r.json()["id"]

        plain, _ = rt.tokens.create(role=Role.COMPLIANCE_OFFICER, name="scoped",
                                    numbers=[PHONE_NUMBER_ID])  # fmt: skip
        r = client.post("/v1/erasure", headers={"Authorization": f"Bearer {plain}"},
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409 and r.json()["error"]["code"] == "erasure_pending", r.text
        assert hold_id not in r.text, r.text
        rt.audit.flush()
        refused = [e for e in rt.audit.events() if e["event"] == "erasure:refused"]
        assert refused and hold_id not in json.dumps(refused), refused

        # An unscoped token is told which hold it waits for.
        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409 and r.json()["error"]["code"] == "erasure_pending", r.text
        assert hold_id in r.text, r.text
