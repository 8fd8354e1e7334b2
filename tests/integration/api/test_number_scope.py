"""Number scope through the real app (issue 14, findings 1, 2, 3 and 10), on the embedded
backends (local folder + SQLite) and on real MinIO + Elasticsearch.

One number identity: a business number is its ``phone_number_id``; the display number is
an attribute. Tokens, holds, search scope, audit events and proofs all use it, and a
number-scoped token never sees, releases or approves another number's things (404, as
if they did not exist)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.keyspace import CAPTURE_KEYS_PREFIX
from archiver.retention.common import StoredRecord, iter_records
from archiver.runtime import Runtime
from tests.integration.api.conftest import drop_es_alias
from tests.support.apps import backend_settings, running_app
from tests.support.webhooks import Number, post

N1 = Number("15550001111", "111000111")  # (display number, phone_number_id)
N2 = Number("15550002222", "222000222")
ALICE, BOB = "16505550001", "4915112345678"

BACKENDS = ["embedded", pytest.param("servers", marks=pytest.mark.integration)]


class Archive:
    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client, self.rt = client, runtime

    def deliver(self, number: Number, wa_id: str, text: str, ts: int | None = None) -> None:
        wamid = "wamid.S" + secrets.token_hex(10)
        post(self.client, number.text(wa_id, wamid, ts or int(time.time()) + 3600, text))
        self.rt.processor.sweep()
        self.rt.follower.run_to_end()
        refresh = getattr(self.rt.index, "refresh", None)
        if callable(refresh):
            refresh()

    def token(
        self, role: Role, numbers: list[str] | None = None, person: str | None = None
    ) -> dict[str, str]:
        plain, _ = self.rt.tokens.create(
            role=role, name=f"{role.value}-{secrets.token_hex(2)}", numbers=numbers,
            person=person,
        )
        return {"Authorization": f"Bearer {plain}"}

    def records(self, number: Number, text: str | None = None) -> list[StoredRecord]:
        return [
            r for r in iter_records(self.rt.objects)
            if r.phone_number_id == number.pnid
            and (text is None or text in str((self.rt.index.get(r.record_id) or {}).get("text")))
        ]  # fmt: skip

    def held(self, record: StoredRecord) -> bool:
        return bool(self.rt.objects.stat(record.key, record.version_id).legal_hold)


@pytest.fixture(params=BACKENDS)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    settings = backend_settings(request, tmp_path, request.param, inline_workers=False)
    with running_app(settings) as (client, runtime):
        try:
            yield Archive(client, runtime)
        finally:
            drop_es_alias(runtime)


# -- finding 2: one number identity -----------------------------------------------------


def test_hold_by_phone_number_id_holds_its_versions_and_later_arrivals(archive: Archive) -> None:
    a = archive
    a.deliver(N1, ALICE, "the zanzibar contract draft")
    a.deliver(N2, BOB, "zanzibar contract, other number")
    legal = a.token(Role.LEGAL)
    r = a.client.post("/v1/holds", headers=legal, json={
        "case_id": "case-pnid", "query": "zanzibar", "phone_number_id": N1.pnid})  # fmt: skip
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["held_versions"] > 0 and hold["held_by_kind"]["record"] == 1
    (mine,) = a.records(N1, "zanzibar")
    (theirs,) = a.records(N2, "zanzibar")
    assert a.held(mine) and not a.held(theirs)  # the store carries the legal hold

    # A later arrival for that number is held as it is indexed; one for the other is not.
    a.deliver(N1, ALICE, "zanzibar contract signed")
    a.deliver(N2, BOB, "zanzibar again, other number")
    later = [x for x in a.records(N1, "zanzibar") if x.record_id != mine.record_id]
    other = [x for x in a.records(N2, "zanzibar") if x.record_id != theirs.record_id]
    assert len(later) == 1 and len(other) == 1
    assert a.held(later[0]) and not a.held(other[0])
    doc = a.client.get(f"/v1/holds/{hold['id']}", headers=legal).json()
    assert doc["held_by_kind"]["record"] == 2

    # A token scoped to a phone_number_id holds its number's records with a bare query.
    scoped = a.token(Role.LEGAL, numbers=[N2.pnid])
    r = a.client.post("/v1/holds", headers=scoped, json={"query": "zanzibar"})
    assert r.status_code == 201, r.text
    assert r.json()["held_by_kind"]["record"] == 2
    assert all(a.held(x) for x in a.records(N2, "zanzibar"))


def test_search_number_is_the_phone_number_id_and_display_number_an_attribute(
    archive: Archive,
) -> None:
    a = archive
    a.deliver(N1, ALICE, "invoice one")
    a.deliver(N2, BOB, "invoice two")
    admin = a.token(Role.ADMIN)

    def total(headers: dict[str, str], **params: Any) -> int:
        r = a.client.get("/v1/search", headers=headers, params={"q": "invoice", **params})
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total(admin, number=N1.pnid) == 1
    assert total(admin, number=N1.display) == 0  # the display number is not the identity
    assert total(admin, display_number="+1 555 000 1111") == 1
    assert total(admin, q=f"invoice number:{N2.pnid}") == 1
    only_1 = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid])
    assert total(only_1) == 1
    assert total(a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.display])) == 0


# -- finding 1: holds and reviews are scoped ---------------------------------------------


def test_scoped_legal_token_cannot_see_or_release_another_numbers_hold(archive: Archive) -> None:
    a = archive
    a.deliver(N1, ALICE, "merger talk one")
    a.deliver(N2, BOB, "merger talk two")
    admin, legal_1 = a.token(Role.ADMIN), a.token(Role.LEGAL, numbers=[N1.pnid])
    other = a.client.post("/v1/holds", headers=admin, json={
        "case_id": "case-secret-2", "reason": "number two", "query": "merger",
        "phone_number_id": N2.pnid})  # fmt: skip
    everyone = a.client.post("/v1/holds", headers=admin, json={
        "case_id": "case-all", "query": "merger"})  # fmt: skip
    own = a.client.post("/v1/holds", headers=legal_1, json={"case_id": "case-1", "query": "merger"})
    assert {other.status_code, everyone.status_code, own.status_code} == {201}
    other_id, all_id, own_id = other.json()["id"], everyone.json()["id"], own.json()["id"]

    for reader in (legal_1, a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid])):
        listed = a.client.get("/v1/holds", headers=reader).json()["holds"]
        assert [h["id"] for h in listed] == [own_id]
        assert "case-secret-2" not in str(listed)
        for hold_id in (other_id, all_id):
            r = a.client.get(f"/v1/holds/{hold_id}", headers=reader)
            assert r.status_code == 404 and r.json()["error"]["code"] == "hold_not_found"
    assert a.client.get(f"/v1/holds/{own_id}", headers=legal_1).status_code == 200

    for hold_id in (other_id, all_id):
        r = a.client.delete(f"/v1/holds/{hold_id}", headers=legal_1)
        assert r.status_code == 404 and r.json()["error"]["code"] == "hold_not_found"
        # The hold stays placed: open, and its versions keep the store's legal hold.
        doc = a.client.get(f"/v1/holds/{hold_id}", headers=admin).json()
        assert doc["status"] == "open" and doc["held_versions"] > 0
        assert all(a.rt.objects.stat(i["key"], i["version_id"]).legal_hold for i in doc["items"])
    (theirs,) = a.records(N2, "merger")
    assert a.held(theirs)

    # Unscoped readers see every hold; the scoped one releases its own.
    listed = a.client.get("/v1/holds", headers=a.token(Role.LEGAL)).json()["holds"]
    assert {h["id"] for h in listed} == {other_id, all_id, own_id}
    assert a.client.delete(f"/v1/holds/{own_id}", headers=legal_1).json()["status"] == "released"


def test_scoped_token_is_refused_on_every_route_that_names_another_number(
    archive: Archive,
) -> None:
    a = archive
    a.deliver(N2, BOB, "someone else's message")
    officer_1 = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid])
    legal_1 = a.token(Role.LEGAL, numbers=[N1.pnid])
    service_1 = a.token(Role.SERVICE, numbers=[N1.pnid])
    consent = {"phone_number_id": N2.pnid, "contact": BOB, "state": "opt_out",
               "evidence": "form", "actor": "desk"}  # fmt: skip
    refused = [
        a.client.post("/v1/erasure", headers=officer_1,
                      json={"phone_number_id": N2.pnid, "contact": BOB}),
        a.client.post("/v1/consent", headers=officer_1, json=consent),
        a.client.post("/v1/consent", headers=service_1, json=consent),
        a.client.get("/v1/consent", headers=officer_1,
                     params={"number": N2.pnid, "contact": BOB}),
        a.client.get(f"/v1/coexistence/{N2.pnid}", headers=officer_1),
        a.client.post("/v1/holds", headers=legal_1,
                      json={"query": "message", "phone_number_id": N2.pnid}),
    ]  # fmt: skip
    assert [r.status_code for r in refused] == [403] * len(refused), [r.text for r in refused]
    # Nothing was done for the other number: its records are unheld and still readable.
    (theirs,) = a.records(N2)
    assert not a.held(theirs)
    admin = a.token(Role.ADMIN)
    hit = a.client.get("/v1/search", headers=admin, params={"q": "someone"}).json()["hits"][0]
    assert hit["message"]["text"] == "someone else's message"
    conversation = hit["message"]["conversation"]
    r = a.client.get(f"/v1/conversations/{conversation}", headers=officer_1)
    assert r.status_code == 404 and r.json()["error"]["code"] == "conversation_not_found"
    assert a.client.get("/v1/search", headers=officer_1, params={"q": "someone"}).json()[
        "total"] == 0  # fmt: skip
    me = a.client.get("/v1/whoami", headers=officer_1).json()
    assert me["numbers"] == [N1.pnid]


REVIEW_DEFAULT = """\
id: default
title: "Test default: one day, then a review"
kind: default
citations:
  - source: "test"
    section: "tests/integration/scope"
    summary: "review before disposal"
retention:
  period: P1D
  clock_starts: capture_time
lock_mode: GOVERNANCE
disposition:
  action: review
  two_person_approval: false
erasure: allowed
"""


def test_scoped_officer_sees_and_approves_only_its_numbers_reviews(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "default.yaml").write_text(REVIEW_DEFAULT)
    settings = backend_settings(None, tmp_path / "data", "embedded", inline_workers=False,
                                policy_dir=policies)  # fmt: skip
    later = datetime.now(UTC) + timedelta(days=3)
    with running_app(settings) as (client, rt):
        a = Archive(client, rt)
        a.deliver(N1, ALICE, "review one", int(time.time()))
        a.deliver(N2, BOB, "review two", int(time.time()))
        (r1,), (r2,) = a.records(N1), a.records(N2)
        job = rt.retention.disposition
        rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
        job.clock = lambda: later
        assert sorted(job.run().queued_for_review) == sorted([r1.record_id, r2.record_id])

        # Approvers are persons (issue 15 #5): the officer's token is bound to one.
        officer_1 = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid], person="p-officer-1")
        listed = client.get("/v1/disposition/reviews", headers=officer_1).json()["reviews"]
        assert [r["record_id"] for r in listed] == [r1.record_id]
        r = client.post(f"/v1/disposition/reviews/{r2.record_id}/approve", headers=officer_1)
        assert r.status_code == 404 and r.json()["error"]["code"] == "review_not_found"
        admin = a.token(Role.ADMIN)
        listed = client.get("/v1/disposition/reviews", headers=admin).json()["reviews"]
        assert {r["record_id"] for r in listed} == {r1.record_id, r2.record_id}  # still pending
        r = client.post(f"/v1/disposition/reviews/{r1.record_id}/approve", headers=officer_1)
        assert r.status_code == 200 and r.json()["status"] == "approved"
        report = job.run()
        assert [d.key for d in report.disposed if d.kind == "record"] == [r1.key]
        assert report.queued_for_review == [r2.record_id]


# -- finding 3: the audit trail is scoped ------------------------------------------------


def test_scoped_auditor_sees_only_events_about_its_numbers(archive: Archive) -> None:
    a = archive
    a.deliver(N1, ALICE, "audit one")
    a.deliver(N2, BOB, "audit two")
    searcher_1 = a.token(Role.LEGAL, numbers=[N1.pnid])
    searcher_2 = a.token(Role.LEGAL, numbers=[N2.pnid])
    admin = a.token(Role.ADMIN)
    assert a.client.get("/v1/search", headers=searcher_1, params={"q": "query-of-one"}).is_success
    assert a.client.get("/v1/search", headers=searcher_2, params={"q": "query-of-two"}).is_success
    assert a.client.get("/v1/search", headers=admin, params={"q": "query-of-all"}).is_success
    r = a.client.post("/v1/holds", headers=admin, json={
        "case_id": "case-secret-2", "query": "audit", "phone_number_id": N2.pnid})  # fmt: skip
    assert r.status_code == 201
    a.rt.audit.flush()

    def events(headers: dict[str, str]) -> list[dict[str, Any]]:
        r = a.client.get("/v1/audit", headers=headers, params={"size": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["events"])

    scoped = events(a.token(Role.AUDITOR, numbers=[N1.pnid]))
    text = str(scoped)
    assert "query-of-one" in text
    assert "query-of-two" not in text and "query-of-all" not in text
    assert "case-secret-2" not in text
    assert all(e["numbers"] and set(e["numbers"]) <= {N1.pnid} for e in scoped)

    everything = str(events(a.token(Role.AUDITOR)))
    for seen in ("query-of-one", "query-of-two", "query-of-all", "case-secret-2"):
        assert seen in everything
    assert "case-secret-2" in str(events(a.token(Role.AUDITOR, numbers=[N2.pnid])))


# -- finding 10: proofs are scoped, an unknown id is cheap --------------------------------


def test_proofs_are_scoped_and_an_unknown_record_never_scans_the_log(archive: Archive) -> None:
    a = archive
    a.deliver(N1, ALICE, "proof one")
    a.deliver(N2, BOB, "proof two")
    (mine,), (theirs,) = a.records(N1), a.records(N2)
    service_1 = a.token(Role.SERVICE, numbers=[N1.pnid])

    ok = a.client.get(f"/v1/records/{mine.record_id}/proof", headers=service_1)
    assert ok.status_code == 200 and ok.json()["record_id"] == mine.record_id
    r = a.client.get(f"/v1/records/{theirs.record_id}/proof", headers=service_1)
    assert r.status_code == 404 and r.json()["error"]["code"] == "record_not_found"

    # The leaf of another number's record is not served by index either.
    leaf = (a.rt.index.get(theirs.record_id) or {})["leaf_index"]
    r = a.client.get("/v1/log/proofs/inclusion", headers=service_1, params={"leaf_index": leaf})
    assert r.status_code == 404 and r.json()["error"]["code"] == "leaf_not_found"
    own_leaf = ok.json()["leaf_index"]
    r = a.client.get("/v1/log/proofs/inclusion", headers=service_1,
                     params={"leaf_index": own_leaf})  # fmt: skip
    assert r.status_code == 200
    unscoped = a.token(Role.SERVICE)
    assert a.client.get(f"/v1/records/{theirs.record_id}/proof", headers=unscoped).is_success

    # An unknown record id is answered from the index and the store's key, not the log.
    spy = _LogSpy(a.rt.proofs.log)
    real, a.rt.proofs.log = a.rt.proofs.log, spy  # type: ignore[assignment]  # a spy on the real log
    try:
        for headers in (service_1, unscoped):
            r = a.client.get("/v1/records/r_aaaaaaaaaaaaaaaaaaaaaaaaaa/proof", headers=headers)
            assert r.status_code == 404 and r.json()["error"]["code"] == "record_not_found"
        assert spy.reads == []
        # A stored record the index does not know (index dropped) is still found.
        a.rt.index.delete_ids([mine.record_id])
        r = a.client.get(f"/v1/records/{mine.record_id}/proof", headers=service_1)
        assert r.status_code == 200 and r.json()["leaf_index"] == own_leaf
        r = a.client.get(f"/v1/records/{theirs.record_id}/proof", headers=service_1)
        assert r.status_code == 404
    finally:
        a.rt.proofs.log = real


class _LogSpy:
    """The real log, counting the entry ranges read through it."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self.reads: list[tuple[int, int]] = []

    def entries(self, start: int, end: int) -> Any:
        self.reads.append((start, end))
        return self._log.entries(start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


# -- erasure across a shared raw delivery (found by the attack on issue 14) -------------


def _one_delivery_for_two_numbers(a: Archive, text_1: str, text_2: str) -> str:
    """Meta may batch changes of several numbers of a WABA into one delivery: one raw slot,
    one capture key, records of both numbers. Returns the raw batch id."""
    ts = int(time.time()) + 3600
    first = json.loads(N1.text(ALICE, "wamid.S" + secrets.token_hex(10), ts, text_1))
    second = json.loads(N2.text(BOB, "wamid.S" + secrets.token_hex(10), ts, text_2))
    first["entry"][0]["changes"] += second["entry"][0]["changes"]
    post(a.client, json.dumps(first).encode())
    (outcome,) = a.rt.processor.sweep()
    a.rt.follower.run_to_end()
    refresh = getattr(a.rt.index, "refresh", None)
    if callable(refresh):
        refresh()
    return str(outcome.batch_id)


def _slot_keys(a: Archive, batch_id: str) -> dict[str, Any]:
    value = a.rt.state.get(CAPTURE_KEYS_PREFIX + batch_id)
    assert value is not None
    return dict(json.loads(value.value)["keys"])


def test_a_scoped_erasure_cannot_destroy_another_numbers_raw_evidence(archive: Archive) -> None:
    a = archive
    batch = _one_delivery_for_two_numbers(a, "alpha shared delivery", "bravo shared delivery")
    before = _slot_keys(a, batch)
    assert before  # the slot's capture key exists
    officer = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid])
    r = a.client.post("/v1/erasure", headers=officer,
                      json={"phone_number_id": N1.pnid, "contact": ALICE})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "erasure_out_of_scope"
    assert N2.pnid not in r.text and N2.display not in r.text
    assert _slot_keys(a, batch) == before  # N2's raw evidence is still readable

    # A token covering both numbers may decide it (no obligation here: gdpr default).
    both = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid, N2.pnid])
    r = a.client.post("/v1/erasure", headers=both,
                      json={"phone_number_id": N1.pnid, "contact": ALICE})
    assert r.status_code == 200, r.text


def test_an_erasure_refusal_names_no_hold_the_token_cannot_see(archive: Archive) -> None:
    a = archive
    a.deliver(N1, ALICE, "quokka matter")
    unscoped = a.token(Role.LEGAL)
    r = a.client.post("/v1/holds", headers=unscoped, json={"case_id": "c-x", "query": "quokka"})
    assert r.status_code == 201, r.text
    hold_id = r.json()["id"]
    assert r.json()["held_by_kind"]["record"] == 1

    officer = a.token(Role.COMPLIANCE_OFFICER, numbers=[N1.pnid])
    r = a.client.post("/v1/erasure", headers=officer,
                      json={"phone_number_id": N1.pnid, "contact": ALICE})
    assert r.status_code == 409, r.text
    assert hold_id not in r.text
    assert r.json()["error"]["details"]["holds_outside_scope"] is True
    a.rt.audit.flush()
    auditor = a.token(Role.AUDITOR, numbers=[N1.pnid])
    events = a.client.get("/v1/audit", headers=auditor).json()
    assert "erasure:refused" in str(events)
    assert hold_id not in str(events)

    # An unscoped officer is told which hold.
    r = a.client.post("/v1/erasure", headers=a.token(Role.COMPLIANCE_OFFICER),
                      json={"phone_number_id": N1.pnid, "contact": ALICE})
    assert r.status_code == 409 and hold_id in r.text
