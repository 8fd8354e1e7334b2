"""A hold's family pass does not read a long index lag inside the request (attack-3 F6):
it reads a bounded part, leaves the rest to the ``holds-family`` job, and the hold says
``applying`` until the job has read it; then every family member is held. Embedded
default and real MinIO + ES."""

from __future__ import annotations

import secrets

import pytest

from archiver.auth import Role
from archiver.keyspace import HOLD_TAILS_PREFIX
from archiver.retention import holds
from archiver.retention.common import record_by_id
from tests.integration.cases.seed import ALICE, BOB, HOUR, N1, T0, Archive
from tests.support.webhooks import post as webhook

CARL = "447700900123"


def _wamid() -> str:
    return f"wamid.{secrets.token_hex(8)}"


def _held(a: Archive, record_id: str) -> bool:
    r = record_by_id(a.rt.objects, record_id)
    return bool(a.rt.objects.stat(r.key, r.version_id).legal_hold)


def test_a_long_index_lag_is_finished_by_the_job_and_the_hold_says_applying(
    archive: Archive, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = archive
    monkeypatch.setattr(holds, "FAMILY_TAIL_IN_REQUEST", 4, raising=False)
    group = "HBgL" + secrets.token_hex(12)
    parent = _wamid()
    a.post(N1.inbound(ALICE, parent, T0 + HOUR,
                      {"type": "text", "text": {"body": "group plans"}, "group_id": group},
                      name="Alice"))  # fmt: skip
    # The index stops: strangers' messages, then Bob's reaction to Alice's message, are
    # logged and not indexed (more leaves than the request reads).
    for n in range(6):
        webhook(a.client, N1.text(CARL, _wamid(), T0 + 2 * HOUR + n, f"filler {n}"))
    webhook(a.client, N1.inbound(BOB, _wamid(), T0 + 3 * HOUR, {
        "type": "reaction", "reaction": {"message_id": parent, "emoji": "\U0001f44d"},
        "group_id": group}, name="Bob"))  # fmt: skip
    a.rt.processor.sweep()
    assert a.rt.log.size() - holds.indexed_size(a.rt.state) > 4

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
    a.rt.follower.run_to_end()
    refresh = getattr(a.rt.index, "refresh", None)
    if callable(refresh):
        refresh()
    reaction = next(d for d in a.docs() if d.get("type") == "reaction")
    assert reaction.get("contact") == BOB
    assert not _held(a, reaction["id"])
    fillers = [d["id"] for d in a.docs() if str(d.get("text") or "").startswith("filler")]
    assert len(fillers) == 6

    done = a.rt.retention.holds.finish_family_tails()
    assert done.get(hold["id"], 0) >= 1, done
    assert _held(a, reaction["id"])
    assert not any(_held(a, f) for f in fillers)  # nothing beyond the family
    after = a.client.get(f"/v1/holds/{hold['id']}", headers=legal).json()
    assert after["applying"] is False and "family_tail" not in after, after
    assert not list(a.rt.state.list(HOLD_TAILS_PREFIX))
    assert a.rt.retention.holds.finish_family_tails() == {}  # nothing left: one listing
