"""A record of the erased person that arrives while the erasure runs.

Logged after the plan but before the keys die, it is sealed with a key the erasure then
destroys, and the follower may index its text first: the erasure must purge it too
(``purge_index`` looks again once the keys are gone). Logged after the keys died, it is
sealed with a fresh key: new data, which stays readable and searchable, and is not
counted with the erased records. Embedded default (SQLite files, -wal included) and
MinIO + Elasticsearch."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.ingest.rawbatch import Delivery
from archiver.retention.common import resolve_subject
from archiver.retention.residue import erasure_residue
from archiver.runtime import Runtime
from tests.support.apps import sign
from tests.support.erasure import (
    BACKENDS,
    ERASE,
    archive,
    envelope,
    index_holds,
    post,
    recoverable,
)
from tests.support.retention import PHONE_NUMBER_ID, Msg, body_for, deliver, now, token

pytestmark = pytest.mark.integration


def _db_bytes(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp / "data").glob("index.sqlite3*"))


def _state_bytes(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp / "data").rglob("*.sqlite3*")
                    if not p.name.startswith("index."))


def _erase_with(rt: Runtime, hooks: dict[str, Any]) -> dict[str, Any]:
    svc = rt.retention.erasure
    svc._crash = lambda at: hooks[at]() if at in hooks else None
    try:
        return svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
    finally:
        svc._crash = lambda _at: None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_logged_between_plan_and_shred_is_purged_from_the_index(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    planned, late = "zqxplan" + secrets.token_hex(5), "zqxlate" + secrets.token_hex(5)
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, f"first {planned}", now())])

        def arrive() -> None:  # after the plan and the intent, before any key dies
            deliver(client, rt, [Msg(ERASE, f"second {late}", now())])
            assert index_holds(rt, late)  # indexed with its decrypted text

        out = _erase_with(rt, {"before:shred_keys": arrive})
        assert out["records"] == 1  # the plan's; the late one is found at purge time
        assert not index_holds(rt, planned)
        assert not index_holds(rt, late)
        assert recoverable(rt, late) == []
        if backend == "embedded":
            assert late.encode() not in _db_bytes(tmp_path)
            assert late.encode() not in _state_bytes(tmp_path)
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []
        subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, ERASE)
        (key,) = list(rt.state.list(f"erasures/{subject}/"))
        value = rt.state.get(key)
        assert value is not None and len(json.loads(value.value)["late_record_ids"]) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_logged_after_the_shred_is_new_data_and_stays(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    planned, after = "zqxplan" + secrets.token_hex(5), "zqxnew" + secrets.token_hex(5)
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, f"first {planned}", now())])

        def arrive() -> None:  # keys destroyed, index not purged yet
            deliver(client, rt, [Msg(ERASE, f"after {after}", now())])

        out = _erase_with(rt, {"before:purge_index": arrive})
        assert out["records"] == 1
        assert not index_holds(rt, planned)
        assert recoverable(rt, planned) == []
        # A fresh key sealed it: readable, searchable, not among the erased.
        assert index_holds(rt, after)
        assert any(w.startswith("content of") for w in recoverable(rt, after))
        new_keys = set(rt.keys.subject_key_ids(out["subject"])) - set(out["keys_shredded"])
        assert len(new_keys) == 1
        subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, ERASE)
        (key,) = list(rt.state.list(f"erasures/{subject}/"))
        value = rt.state.get(key)
        assert value is not None and json.loads(value.value)["late_record_ids"] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fold_batch_overtaken_by_the_erasure_does_not_write_the_text_back(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The follower reads a fold's target (the erased message) from the index, the
    erasure shreds and purges, then the batch writes the target back with its text. The
    re-read after the shred must not leave it there."""
    marker, original = "zqxfold" + secrets.token_hex(5), "wamid.F" + secrets.token_hex(12)
    with archive(request, tmp_path, backend) as (client, rt):
        t, contact = str(now()), [{"profile": {"name": "P"}, "wa_id": ERASE}]
        post(client, rt, envelope({"contacts": contact, "messages": [
            {"from": ERASE, "id": original, "timestamp": t, "type": "text",
             "text": {"body": f"first {marker}"}}]}))
        assert index_holds(rt, marker)
        body = envelope({"contacts": contact, "messages": [
            {"from": ERASE, "id": "wamid.R" + secrets.token_hex(12), "timestamp": t,
             "type": "reaction", "reaction": {"message_id": original, "emoji": "+"}}]})
        r = client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        assert rt.processor.sweep()  # logged, not indexed yet

        writer = rt.follower._writer
        upsert = writer.upsert
        erased: list[dict[str, Any]] = []

        def erase_first(docs: Any) -> Any:
            docs = list(docs)
            if not erased:  # the batch's target doc is read; the erasure runs now
                erased.append(rt.retention.erasure.erase(PHONE_NUMBER_ID, ERASE, by="dpo"))
                assert not index_holds(rt, marker)
            return upsert(docs)

        writer.upsert = erase_first  # type: ignore[method-assign]
        try:
            rt.follower.run_to_end()
        finally:
            writer.upsert = upsert  # type: ignore[method-assign]
        assert erased and erased[0]["records"] == 2
        assert not index_holds(rt, marker)
        if backend == "embedded":
            rt.index.force_merge_expunge()  # type: ignore[attr-defined]
            assert marker.encode() not in _db_bytes(tmp_path)
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []


OTHER = "447700900077"  # a contact whose delivery shares the late raw batch


def _late_shared_batch(rt: Runtime, late: str, shared: str, own: str) -> None:
    """One raw batch of two deliveries (group commit): slot 0 carries the erased
    person's late message *and* OTHER's, slot 1 only OTHER's. Processed and indexed."""
    def delivery(body: bytes) -> Delivery:
        return Delivery(body=body, received_at=now_iso(), signature_header=sign(body),
                        secret_index=0, content_type="application/json")  # fmt: skip

    both = [Msg(ERASE, f"late {late}", now()), Msg(OTHER, f"shared {shared}", now())]
    rt.capture_writer.write([delivery(body_for(both)),
                             delivery(body_for([Msg(OTHER, f"own {own}", now())]))])
    outcomes = rt.processor.sweep()
    assert outcomes and all(o.status == "done" for o in outcomes), outcomes
    rt.follower.run_to_end()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_raw_slot_shared_with_another_subject_loses_its_capture_key(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The late message came in one delivery with another person's: that delivery's
    capture key decrypted the erased text from the raw capture after the erasure. It goes,
    as a planned shared slot's does (the other record allows it); the other person's own
    record and their own slot of the same batch stay readable."""
    late, shared, own = ("zqx" + k + secrets.token_hex(5) for k in ("late", "shared", "own"))
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        out = _erase_with(rt, {"before:shred_keys": lambda: _late_shared_batch(
            rt, late, shared, own)})  # fmt: skip
        assert recoverable(rt, late) == []
        assert not index_holds(rt, late)
        # The other person's record keeps its content (its own key); its raw evidence in
        # the shared delivery went with the slot, its own delivery keeps its key.
        assert [w for w in recoverable(rt, shared) if w.startswith("raw slot")] == []
        assert any(w.startswith("content of") for w in recoverable(rt, shared))
        assert any(w.startswith("raw slot 1 of") for w in recoverable(rt, own))
        assert index_holds(rt, shared) and index_holds(rt, own)
        assert out["capture_slots_shredded"] == 2  # the planned one and the late shared one
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_shared_slot_a_hold_covers_keeps_its_key_and_says_so(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The other person is on legal hold: the shared delivery is held evidence (Art.
    17(3)(e)), as it would have refused the erasure had it been in the plan. The slot
    keeps its key and the procedure names it and the hold."""
    late, shared, own = ("zqx" + k + secrets.token_hex(5) for k in ("late", "shared", "own"))
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(OTHER, "before zqxother", now())])
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": OTHER, "phone_number_id": PHONE_NUMBER_ID})
        assert r.status_code == 201, r.text
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        out = _erase_with(rt, {"before:shred_keys": lambda: _late_shared_batch(
            rt, late, shared, own)})  # fmt: skip
        assert out["capture_slots_shredded"] == 1  # the planned one only
        assert out["capture_slots_kept"] == 1
        subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, ERASE)
        (key,) = list(rt.state.list(f"erasures/{subject}/"))
        value = rt.state.get(key)
        assert value is not None
        kept = json.loads(value.value)["late_slots_kept"]
        assert [(k["slot"], k["holds"]) for k in kept] == [(0, [r.json()["id"]])]
        assert any(w.startswith("raw slot 0 of") for w in recoverable(rt, shared))
        assert not index_holds(rt, late)  # the index copy goes all the same


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_shared_slot_with_a_number_outside_the_scope_keeps_its_key(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """A token scoped to one number erases; the late delivery also carries a change of
    another number. Its key stays (a planned slot like it is refused with
    ``erasure_out_of_scope``): a scoped token destroys no other number's evidence."""
    late, other = "zqxlate" + secrets.token_hex(5), "zqxother" + secrets.token_hex(5)
    elsewhere = "999000999"

    def change(number: str, wa_id: str, text: str) -> dict[str, Any]:
        return {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550009999", "phone_number_id": number},
            "contacts": [{"profile": {"name": "P"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": "wamid.S" + secrets.token_hex(12),
                          "timestamp": str(now()), "type": "text", "text": {"body": text}}],
        }}  # fmt: skip

    body = json.dumps({"object": "whatsapp_business_account", "entry": [{
        "id": "102290129340398", "changes": [change(PHONE_NUMBER_ID, ERASE, f"late {late}"),
                                             change(elsewhere, OTHER, f"other {other}")]}]}
    ).encode()  # fmt: skip
    with archive(request, tmp_path, backend) as (client, rt):
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])

        def arrive() -> None:
            r = client.post("/webhooks/whatsapp", content=body, headers={
                "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            assert rt.processor.sweep()
            rt.follower.run_to_end()

        svc = rt.retention.erasure
        svc._crash = lambda at: arrive() if at == "before:shred_keys" else None
        try:
            out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo", numbers=[PHONE_NUMBER_ID])
        finally:
            svc._crash = lambda _at: None
        assert out["capture_slots_shredded"] == 1 and out["capture_slots_kept"] == 1
        assert any(w.startswith("raw slot 0 of") for w in recoverable(rt, other))
        assert not index_holds(rt, late)
