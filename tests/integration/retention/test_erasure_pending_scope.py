"""An ``erasure_pending`` answer names no hold a number-scoped token does not cover
(attack-4b). The refusal said which query holds could not be run yet by id, in the
response and in the scoped token's own audit event, although a hold over every number is
not that token's to see (``erasure_refused`` already hides such holds)."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.auth import Role
from tests.support.erasure import ERASE, archive, shared_slot_behind_a_query_hold
from tests.support.retention import PHONE_NUMBER_ID, token


def test_a_pending_erasure_does_not_name_holds_outside_the_token_scope(tmp_path: Path) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        hold_id = shared_slot_behind_a_query_hold(client, rt)

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
