"""An open hold whose criteria select the erased person's *own* record keeps it, applied
yet or not (attack-4b). A query hold placed while the index lags behind the person's
message finds nothing yet; the erasure decided on applied holds only (its subjects, its
slots), so it destroyed the message the hold was about to hold. Now the open holds'
criteria are run over the person's records too: a query hold that cannot be run yet
answers ``erasure_pending`` (nothing is destroyed), one that selects a record refuses
the erasure. Embedded default and MinIO + Elasticsearch."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.auth import Role
from tests.support.erasure import (
    BACKENDS,
    ERASE,
    archive,
    first_then_captured,
    recoverable,
    try_erase,
)
from tests.support.retention import Msg, now, token


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_hold_on_the_persons_own_unindexed_message_keeps_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with archive(request, tmp_path, backend) as (client, rt):
        first_then_captured(client, rt, [Msg(ERASE, "evidence zqxownheld", now())])
        assert rt.processor.sweep()  # logged; the follower is not run: the index lags
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"case_id": "c-own", "query": "zqxownheld"})  # fmt: skip
        assert r.status_code == 201 and r.json()["held_versions"] == 0, r.text
        hold_id = r.json()["id"]

        status, code, text = try_erase(client, rt)
        assert (status, code) == (409, "erasure_pending"), text
        assert any(w.startswith("content of") for w in recoverable(rt, "zqxownheld"))

        rt.follower.run_to_end()  # the hold now holds the message: a plain refusal
        status, code, text = try_erase(client, rt)
        assert (status, code) == (409, "erasure_refused") and hold_id in text, text
        assert any(w.startswith("content of") for w in recoverable(rt, "zqxownheld"))

        r = client.delete(f"/v1/holds/{hold_id}", headers=token(rt, Role.LEGAL))
        assert r.status_code == 200, r.text
        status, _code, text = try_erase(client, rt)
        assert status == 200, text
        # Its content and raw slot (the hold's own query text stays in the hold and audit).
        assert not [w for w in recoverable(rt, "zqxownheld")
                    if w.startswith(("content of", "raw slot"))]  # fmt: skip
