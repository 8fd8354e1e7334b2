"""Disposition never deletes a record a hold still being applied will hold (attack-4b).

A hold placed while the index lags by more leaves than the request reads leaves the rest
of its family pass to the ``holds-family`` job (``applying``). Until that job has read the
tail, a family member in it (here another person's reaction to the held message) is not
in the hold's items yet; disposition decided on the held items alone and deleted it,
although the hold covers it. Disposition now waits while a hold is applying."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.auth import Role
from archiver.retention import holds
from archiver.retention.common import iter_records, resolve_subject
from archiver.store.port import MIN_LOCK
from tests.support.retention import SHORT_DEFAULT, app_on, token
from tests.support.webhooks import Number, post

N1 = Number("15550001111", "111000111")
ALICE, BOB, CARL = "16505550001", "4915112345678", "447700900123"


def _wamid() -> str:
    return f"wamid.{secrets.token_hex(8)}"


def test_disposition_waits_while_a_hold_is_applying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(holds, "FAMILY_TAIL_IN_REQUEST", 4, raising=False)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(SHORT_DEFAULT)  # kept until the message time
    old = int(time.time()) - 3 * 86400  # every record here is past its retain-until
    with app_on(tmp_path, policy_dir=policies, inline_workers=False) as (client, rt):
        group = "HBgL" + secrets.token_hex(12)
        parent = _wamid()
        post(client, N1.inbound(ALICE, parent, old, {
            "type": "text", "text": {"body": "group plans"}, "group_id": group},
            name="Alice"))  # fmt: skip
        rt.processor.sweep()
        rt.follower.run_to_end()
        # The index stops: strangers' messages, then Bob's reaction to Alice's message.
        for n in range(6):
            post(client, N1.text(CARL, _wamid(), old + 10 + n, f"filler {n}"))
        post(client, N1.inbound(BOB, _wamid(), old + 60, {
            "type": "reaction", "reaction": {"message_id": parent, "emoji": "\U0001f44d"},
            "group_id": group}, name="Bob"))  # fmt: skip
        rt.processor.sweep()
        bob = resolve_subject(rt.state, rt.pseudo, N1.pnid, BOB)
        (reaction,) = [r for r in iter_records(rt.objects) if r.subject == bob]

        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": ALICE, "phone_number_id": N1.pnid})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["applying"] is True, r.json()

        report = rt.retention.disposition.run()
        assert report.ran and report.waiting_for_holds == [r.json()["id"]], report.to_json()
        # The reaction is still there: the hold's tail covers it.
        assert list(rt.objects.list_versions(reaction.key)), report.to_json()

        rt.retention.holds.finish_family_tails()
        assert rt.objects.stat(reaction.key, reaction.version_id).legal_hold
        # Records past their period when written are locked MIN_LOCK longer (a store
        # refuses a lock in the past): move the local store's clock beyond it.
        later = datetime.now(UTC) + MIN_LOCK + timedelta(seconds=1)
        rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
        rt.retention.disposition.clock = lambda: later
        after = rt.retention.disposition.run()
        assert list(rt.objects.list_versions(reaction.key))
        # Once applied, disposition goes on with what no hold covers.
        assert any(d.kind == "record" for d in after.disposed), after.to_json()


def test_an_erasure_keeps_a_family_member_an_applying_hold_will_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same window for erasure: Bob's reaction to Alice's held message is in the
    applying hold's tail, so the hold does not name Bob yet. Erasing Bob destroyed the
    reaction; the hold's held targets (read while it is applying) now refuse it."""
    monkeypatch.setattr(holds, "FAMILY_TAIL_IN_REQUEST", 4, raising=False)
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        group = "HBgL" + secrets.token_hex(12)
        parent = _wamid()
        post(client, N1.inbound(ALICE, parent, int(time.time()), {
            "type": "text", "text": {"body": "group plans"}, "group_id": group},
            name="Alice"))  # fmt: skip
        rt.processor.sweep()
        rt.follower.run_to_end()
        for n in range(6):
            post(client, N1.text(CARL, _wamid(), int(time.time()) + n, f"filler {n}"))
        post(client, N1.inbound(BOB, _wamid(), int(time.time()), {
            "type": "reaction", "reaction": {"message_id": parent, "emoji": "\U0001f44d"},
            "group_id": group}, name="Bob"))  # fmt: skip
        rt.processor.sweep()  # the index lags: the reaction is in the tail's range

        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": ALICE, "phone_number_id": N1.pnid})  # fmt: skip
        assert r.status_code == 201 and r.json()["applying"] is True, r.text
        hold_id = r.json()["id"]
        rt.follower.run_to_end()

        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": N1.pnid, "contact": BOB})  # fmt: skip
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_refused" and hold_id in r.text, r.text
