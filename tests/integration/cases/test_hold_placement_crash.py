"""A hold whose placement was killed midway (kill -9 while its family pass read the index
lag inside the request) is finished after the restart: the at-start ``holds-backfill``
job re-runs every hold left ``placing``, family included, and opens it. Before, such a
hold stayed ``placing`` for good with part of its family unheld (attack-4b), and only
the deferred tail beyond the request's bound was read by the ``holds-family`` job.
Embedded default and real MinIO + ES."""

from __future__ import annotations

import pytest

from archiver.auth import Role
from archiver.retention.common import resolve_subject
from archiver.retention.holds import HoldScope, HoldService
from tests.integration.cases.seed import ALICE, HOUR, N1, T0, Archive, new_wamid


class _Killed(BaseException):
    """A kill -9 stand-in: nothing in the placement catches it (not an Exception)."""


def test_a_placement_killed_in_its_family_pass_is_finished_after_the_restart(
    archive: Archive, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = archive
    # The index stops. Bob's reaction to Alice's message comes first (inside the part the
    # request reads itself), then strangers' messages (the deferred tail).
    a.group_thread_with_a_lag(monkeypatch, reaction_first=True)

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
    reaction, fillers = a.lag_indexed()
    service.backfill_targets()
    service.finish_family_tails()

    after = a.client.get(f"/v1/holds/{hold['id']}", headers=a.token(Role.LEGAL)).json()
    assert after["status"] == "open", after
    assert after["applying"] is False, after
    assert a.held(reaction["id"])
    assert not any(a.held(f) for f in fillers)


def test_disposition_waits_for_a_hold_left_placing(archive: Archive) -> None:
    """Until the restart's job has re-run it, a killed placement's hold lists part of what
    it covers: disposition deletes nothing meanwhile."""
    a = archive
    a.post(N1.text(ALICE, new_wamid(), T0 + HOUR, "plans"))
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
