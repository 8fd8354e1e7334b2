"""A hold whose placement was killed midway (kill -9 while its family pass read the index
lag inside the request) is finished after the restart: the at-start ``holds-backfill``
job re-runs every hold left ``placing``, family included, and opens it. Before, such a
hold stayed ``placing`` for good with part of its family unheld (attack-4b), and only
the deferred tail beyond the request's bound was read by the ``holds-family`` job.
Embedded default and real MinIO + ES."""

from __future__ import annotations

import secrets

import pytest

from archiver.auth import Role
from archiver.retention import holds
from archiver.retention.common import record_by_id, resolve_subject
from archiver.retention.holds import HoldScope, HoldService
from tests.integration.cases.seed import ALICE, BOB, HOUR, N1, T0, Archive
from tests.support.webhooks import post as webhook

CARL = "447700900123"


class _Killed(BaseException):
    """A kill -9 stand-in: nothing in the placement catches it (not an Exception)."""


def _wamid() -> str:
    return f"wamid.{secrets.token_hex(8)}"


def _held(a: Archive, record_id: str) -> bool:
    r = record_by_id(a.rt.objects, record_id)
    return bool(a.rt.objects.stat(r.key, r.version_id).legal_hold)


def test_a_placement_killed_in_its_family_pass_is_finished_after_the_restart(
    archive: Archive, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = archive
    monkeypatch.setattr(holds, "FAMILY_TAIL_IN_REQUEST", 4, raising=False)
    group = "HBgL" + secrets.token_hex(12)
    parent = _wamid()
    a.post(N1.inbound(ALICE, parent, T0 + HOUR,
                      {"type": "text", "text": {"body": "group plans"}, "group_id": group},
                      name="Alice"))  # fmt: skip
    # The index stops. Bob's reaction to Alice's message comes first (inside the part the
    # request reads itself), then strangers' messages (the deferred tail).
    webhook(a.client, N1.inbound(BOB, _wamid(), T0 + 2 * HOUR, {
        "type": "reaction", "reaction": {"message_id": parent, "emoji": "\U0001f44d"},
        "group_id": group}, name="Bob"))  # fmt: skip
    for n in range(6):
        webhook(a.client, N1.text(CARL, _wamid(), T0 + 3 * HOUR + n, f"filler {n}"))
    a.rt.processor.sweep()
    assert a.rt.log.size() - holds.indexed_size(a.rt.state) > 4

    service = a.rt.retention.holds
    original = HoldService._unindexed_family

    def killed(self: HoldService, *args: object, **kwargs: object) -> object:
        raise _Killed()

    monkeypatch.setattr(HoldService, "_unindexed_family", killed)
    subject = resolve_subject(a.rt.state, a.rt.pseudo, N1.pnid, ALICE)
    with pytest.raises(_Killed):
        service.place(HoldScope(subject=subject, phone_number_id=N1.pnid), case_id=None,
                      reason="r", by="legal", numbers=None)  # fmt: skip
    monkeypatch.setattr(HoldService, "_unindexed_family", original)
    (hold,) = service.list()
    assert hold["status"] == "placing"

    # The restart: the index catches up, then the at-start jobs run.
    a.rt.follower.run_to_end()
    refresh = getattr(a.rt.index, "refresh", None)
    if callable(refresh):
        refresh()
    reaction = next(d for d in a.docs() if d.get("type") == "reaction")
    service.backfill_targets()
    service.finish_family_tails()

    after = a.client.get(f"/v1/holds/{hold['id']}", headers=a.token(Role.LEGAL)).json()
    assert after["status"] == "open", after
    assert after["applying"] is False, after
    assert _held(a, reaction["id"])
    fillers = [d["id"] for d in a.docs() if str(d.get("text") or "").startswith("filler")]
    assert len(fillers) == 6 and not any(_held(a, f) for f in fillers)


def test_disposition_waits_for_a_hold_left_placing(archive: Archive) -> None:
    """Until the restart's job has re-run it, a killed placement's hold lists part of what
    it covers: disposition deletes nothing meanwhile."""
    a = archive
    a.post(N1.text(ALICE, _wamid(), T0 + HOUR, "plans"))
    service = a.rt.retention.holds
    subject = resolve_subject(a.rt.state, a.rt.pseudo, N1.pnid, ALICE)
    hold = service.place(HoldScope(subject=subject, phone_number_id=N1.pnid), case_id=None,
                         reason="r", by="legal", numbers=None)  # fmt: skip
    a.rt.retention.registry.update(hold["id"], lambda d: {**d, "status": "placing"})
    report = a.rt.retention.disposition.run()
    assert report.waiting_for_holds == [hold["id"]], report.to_json()
    service.backfill_targets()
    assert service.get(hold["id"])["status"] == "open"
    assert a.rt.retention.disposition.run().waiting_for_holds == []
