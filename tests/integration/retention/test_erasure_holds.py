"""An erasure never destroys another person's held evidence in a shared raw slot.

A delivery can carry the erased person's message and another person's: one raw slot,
one capture key. The slot is decided on what it carries *now*, by every open hold's
criteria over the other person's records, not only by the slots a hold has been applied
to yet (attack-3 F1): a query hold while the index lags, a subject hold while the other
record is written but not logged (the processor's ``before_append`` point), a hold placed
between ``shred_keys`` and ``shred_slots``. A kept slot is residue until nothing keeps it,
then destroyed (F2). A number-scoped token never destroys a slot whose delivery carries a
change of no provable number (F7). Embedded default and MinIO + Elasticsearch."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.errors import Conflict
from archiver.ledger.entry import EntryKind
from archiver.retention.common import resolve_subject
from archiver.retention.residue import erasure_residue
from archiver.runtime import Runtime
from tests.support.apps import sign
from tests.support.erasure import BACKENDS, ERASE, archive, recoverable
from tests.support.retention import (
    PHONE_NUMBER_ID,
    Msg,
    body_for,
    deliver,
    log_entries,
    now,
    token,
)

pytestmark = pytest.mark.integration

OTHER = "447700900078"  # shares the erased person's delivery


class _Crash(Exception):
    pass


def _marker(kind: str) -> str:
    return f"zqx{kind}{secrets.token_hex(5)}"


def _slot_readable(rt: Runtime, needle: str) -> bool:
    return any(w.startswith("raw slot") for w in recoverable(rt, needle))


def _capture(client: TestClient, body: bytes) -> None:
    r = client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def _erase_api(client: TestClient, rt: Runtime) -> Any:
    return client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                       json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})


def _hold(client: TestClient, rt: Runtime, scope: dict[str, str]) -> str:
    r = client.post("/v1/holds", headers=token(rt, Role.LEGAL), json=scope)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _release(client: TestClient, rt: Runtime, hold_id: str) -> None:
    r = client.delete(f"/v1/holds/{hold_id}", headers=token(rt, Role.LEGAL))
    assert r.status_code == 200, r.text


def _procedure(rt: Runtime) -> dict[str, Any]:
    subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, ERASE)
    (key,) = list(rt.state.list(f"erasures/{subject}/"))
    value = rt.state.get(key)
    assert value is not None
    return dict(json.loads(value.value))


def _slot_leaves(rt: Runtime) -> int:
    return sum(1 for e in log_entries(rt) if e.kind is EntryKind.KEY_SHREDDED
               and e.fields.get("kind_of_key") == "capture_slot")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_hold_on_the_other_record_keeps_the_shared_slot_while_the_index_lags(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Window (a): the shared delivery is logged, not indexed; a query hold matching the
    other person's message is placed (it finds nothing yet). The erasure must not destroy
    the slot on the strength of a hold not applied yet: it is refused ``erasure_pending``
    until the index catches up, then refused by the hold; released, the slot goes."""
    mine, theirs = _marker("mine"), _marker("theirs")
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        _capture(client, body_for([Msg(ERASE, f"mine {mine}", now()),
                                   Msg(OTHER, f"evidence {theirs}", now())]))
        assert rt.processor.sweep()  # logged; the follower is not run: the index lags
        hold_id = _hold(client, rt, {"case_id": "c-q", "query": theirs})

        r = _erase_api(client, rt)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_pending"
        assert _slot_readable(rt, theirs)
        assert any(w.startswith("content of") for w in recoverable(rt, mine))  # nothing done

        rt.follower.run_to_end()  # the query hold now holds the other record and its slot
        r = _erase_api(client, rt)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_refused" and hold_id in r.text
        assert _slot_readable(rt, theirs)

        _release(client, rt, hold_id)
        r = _erase_api(client, rt)
        assert r.status_code == 200, r.text
        assert not _slot_readable(rt, theirs) and recoverable(rt, mine) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_subject_hold_keeps_a_shared_slot_whose_records_are_not_logged_yet(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Window (b): the other person is on hold; the shared delivery's records are written
    but the processor dies at ``before_append`` (the hold's hook has not run). The erasure
    is deferred (``erasure_pending``), never decided on an incomplete picture; once the
    batch is finished the hold refuses it. The slot stays readable throughout."""
    mine, theirs = _marker("mine"), _marker("theirs")
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(OTHER, "before zqxother", now())])
        _hold(client, rt, {"contact": OTHER, "phone_number_id": PHONE_NUMBER_ID})
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        _capture(client, body_for([Msg(ERASE, f"mine {mine}", now()),
                                   Msg(OTHER, f"evidence {theirs}", now())]))

        def die(point: str) -> None:
            if point == "before_append":
                raise _Crash(point)

        (pending,) = rt.processor.pending_batches()
        rt.processor._crash = die
        try:
            with pytest.raises(_Crash):
                rt.processor.process(pending)
        finally:
            rt.processor._crash = lambda _point: None

        r = _erase_api(client, rt)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_pending"
        assert _slot_readable(rt, theirs)
        with pytest.raises(Conflict):  # the resume job's path refuses the same way
            rt.retention.erasure.erase(PHONE_NUMBER_ID, ERASE, by="dpo")

        assert rt.processor.sweep()  # finished: the hook holds the other record and slot
        r = _erase_api(client, rt)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_refused"
        assert _slot_readable(rt, theirs)
        assert any(w.startswith("content of") for w in recoverable(rt, mine))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hold_placed_between_shred_keys_and_shred_slots_keeps_the_slot_until_released(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Window (c): the keys die, then a hold on the other person is placed before the
    slots go. The slot is re-decided right before its destruction: it stays, named in
    ``slots_kept``, and the erased person's own content is unreadable all the same. It is
    residue until the hold is released (F2); the release destroys it and logs its leaf."""
    mine, theirs = _marker("mine"), _marker("theirs")
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, f"mine {mine}", now()),
                             Msg(OTHER, f"evidence {theirs}", now())])
        placed: list[str] = []
        svc = rt.retention.erasure

        def place(at: str) -> None:
            if at == "before:shred_slots":
                placed.append(_hold(client, rt, {"contact": OTHER,
                                                 "phone_number_id": PHONE_NUMBER_ID}))

        svc._crash = place
        try:
            out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
        finally:
            svc._crash = lambda _at: None
        assert placed and out["capture_slots_kept"] == 1
        assert out["capture_slots_shredded"] == 0
        assert [k["holds"] for k in _procedure(rt)["slots_kept"]] == [placed]
        assert _slot_readable(rt, theirs)
        assert not any(w.startswith("content of") for w in recoverable(rt, mine))
        residue = erasure_residue(rt.log, rt.objects, rt.state, rt.index)
        assert [f.kind.value for f in residue] == ["keys:erased_material"]
        assert "kept" in residue[0].message and placed[0] in residue[0].message
        leaves = _slot_leaves(rt)

        _release(client, rt, placed[0])
        assert not _slot_readable(rt, theirs) and recoverable(rt, mine) == []
        assert any(w.startswith("content of") for w in recoverable(rt, theirs))
        assert _slot_leaves(rt) == leaves + 1
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []
        doc = _procedure(rt)
        assert doc["slots_kept"] == [] and len(doc["slots_shredded"]) == 1
        assert list(rt.state.list("erasures-kept/")) == []
        assert rt.retention.erasure.settle_kept_slots() == []  # idempotent


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_slot_kept_for_a_hold_is_residue_until_the_resume_job_destroys_it(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """F2: a late shared slot kept for the other person's hold was never destroyed after
    the release and residue said nothing. It is reported while kept, and the erasure-resume
    job destroys it once the hold is gone (here released behind the API's back, so the
    job, not the release hook, does it)."""
    late, theirs = _marker("late"), _marker("theirs")
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(OTHER, "before zqxother", now())])
        hold_id = _hold(client, rt, {"contact": OTHER, "phone_number_id": PHONE_NUMBER_ID})
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        svc = rt.retention.erasure

        def arrive(at: str) -> None:
            if at == "before:shred_keys":
                deliver(client, rt, [Msg(ERASE, f"late {late}", now()),
                                     Msg(OTHER, f"shared {theirs}", now())])

        svc._crash = arrive
        try:
            out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
        finally:
            svc._crash = lambda _at: None
        assert out["capture_slots_kept"] == 1 and _slot_readable(rt, late)
        residue = erasure_residue(rt.log, rt.objects, rt.state, rt.index)
        assert len(residue) == 1 and "kept" in residue[0].message

        assert svc.resume_pending() == [] and _slot_readable(rt, late)  # still held
        registry = rt.retention.registry
        hooks, registry.after_release = registry.after_release, []
        try:
            registry.release(hold_id, by="legal")
        finally:
            registry.after_release = hooks
        assert _slot_readable(rt, late)  # nothing ran yet
        svc.resume_pending()
        assert not _slot_readable(rt, late) and not _slot_readable(rt, theirs)
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []
        assert _procedure(rt)["late_slots_kept"] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scoped_erasure_keeps_a_slot_whose_other_change_has_no_number(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """F7: the delivery carries the erased person's message and a template status update
    (no ``phone_number_id``). A number-scoped token cannot prove the slot is all in its
    scope (the export seals such a slot): ``erasure_out_of_scope``, the slot stays. An
    unscoped request may destroy it."""
    mine = _marker("mine")
    message = json.loads(body_for([Msg(ERASE, f"mine {mine}", now())]))
    message["entry"][0]["changes"].append({"field": "message_template_status_update", "value": {
        "event": "APPROVED", "message_template_id": 1689556908129832,
        "message_template_name": "order_confirmation", "message_template_language": "en-US",
        "reason": "NONE", "message_template_category": "UTILITY"}})  # fmt: skip
    with archive(request, tmp_path, backend) as (client, rt):
        body = json.dumps(message).encode()
        _capture(client, body)
        assert rt.processor.sweep()
        rt.follower.run_to_end()
        svc = rt.retention.erasure
        with pytest.raises(Conflict) as refused:
            svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo", numbers=[PHONE_NUMBER_ID])
        assert refused.value.code == "erasure_out_of_scope"
        assert _slot_readable(rt, mine)
        out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
        assert out["capture_slots_shredded"] == 1 and recoverable(rt, mine) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_shared_slot_is_kept_while_a_query_hold_cannot_be_run_on_it_yet(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """F1 on late slots: the late shared delivery is logged, not indexed, and a query
    hold matching the other person's message is open. The late slot is not decidable: it
    is kept (not destroyed on a hold not applied yet), stays kept once the index catches
    up and the hold holds it, and goes when the hold is released."""
    late, theirs = _marker("late"), _marker("theirs")
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        holds: list[str] = []
        svc = rt.retention.erasure

        def arrive(at: str) -> None:
            if at == "before:shred_keys":
                _capture(client, body_for([Msg(ERASE, f"late {late}", now()),
                                           Msg(OTHER, f"shared {theirs}", now())]))
                assert rt.processor.sweep()  # logged; the index lags
                holds.append(_hold(client, rt, {"case_id": "c-l", "query": theirs}))

        svc._crash = arrive
        try:
            out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
        finally:
            svc._crash = lambda _at: None
        assert out["capture_slots_kept"] == 1 and _slot_readable(rt, theirs)
        (kept,) = _procedure(rt)["late_slots_kept"]
        assert any("index has not caught up" in r for r in kept["reasons"])

        rt.follower.run_to_end()
        assert svc.settle_kept_slots() == [] and _slot_readable(rt, theirs)  # held now
        _release(client, rt, holds[0])
        assert not _slot_readable(rt, theirs) and not _slot_readable(rt, late)
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []
