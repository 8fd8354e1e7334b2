"""A hold's family pass does not read a long index lag inside the request (attack-3 F6):
it reads a bounded part, leaves the rest to the ``holds-family`` job, and the hold says
``applying`` until the job has read it; then every family member is held. Embedded
default and real MinIO + ES."""

from __future__ import annotations

import pytest

from archiver.auth import Role
from archiver.keyspace import HOLD_TAILS_PREFIX
from tests.integration.cases.seed import ALICE, N1, Archive


def test_a_long_index_lag_is_finished_by_the_job_and_the_hold_says_applying(
    archive: Archive, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = archive
    # The index stops: strangers' messages, then Bob's reaction to Alice's message, are
    # logged and not indexed (more leaves than the request reads).
    a.group_thread_with_a_lag(monkeypatch, reaction_first=False)

    legal = a.token(Role.LEGAL)
    r = a.client.post("/v1/holds", headers=legal,
                      json={"contact": ALICE, "phone_number_id": N1.pnid})  # fmt: skip
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["applying"] is True and hold["family_tail"]["end"] == a.rt.log.size(), hold
    assert list(a.rt.state.list(HOLD_TAILS_PREFIX))
    assert a.client.get(f"/v1/holds/{hold['id']}", headers=legal).json()["applying"] is True

    # The index catches up: its hook checks query holds only, so Bob's reaction is still
    # unheld under this subject hold until the job reads the tail.
    reaction, fillers = a.lag_indexed()
    assert not a.held(reaction["id"])

    done = a.rt.retention.holds.finish_family_tails()
    assert done.get(hold["id"], 0) >= 1, done
    assert a.held(reaction["id"])
    assert not any(a.held(f) for f in fillers)  # nothing beyond the family
    after = a.client.get(f"/v1/holds/{hold['id']}", headers=legal).json()
    assert after["applying"] is False and "family_tail" not in after, after
    assert not list(a.rt.state.list(HOLD_TAILS_PREFIX))
    assert a.rt.retention.holds.finish_family_tails() == {}  # nothing left: one listing
