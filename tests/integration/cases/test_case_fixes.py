"""Findings on cases (issue: holds of a case and later family arrivals, chain of custody
of a case hold's release, out-of-range dates, chunked bodies, control characters, strict
booleans), on the embedded backends and on real MinIO + Elasticsearch."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from archiver.auth import Role
from archiver.keyspace import hold_targets_of
from archiver.retention.common import StoredRecord, record_by_id
from tests.integration.cases.seed import ALICE, DATE_FROM, DATE_TO, HOUR, N1, T0, Archive
from tests.support.webhooks import post

DAY = 86400


def _case(a: Archive, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {
        "name": "Acme v. Example", "matter_number": "2026-CV-0042",
        "custodians": {"numbers": [N1.pnid], "contacts": [ALICE]},
        "scope": {"query": "merger", "date_from": DATE_FROM, "date_to": DATE_TO,
                  "numbers": [N1.pnid]},
        **extra,
    }  # fmt: skip
    r = a.client.post("/v1/cases", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _wamid() -> str:
    return f"wamid.{secrets.token_hex(8)}"


def _by_text(a: Archive) -> dict[str, str]:
    """Record id of each indexed document, by a label (type and text)."""
    out: dict[str, str] = {}
    for d in a.docs():
        out[f"{d.get('kind')}:{d.get('type')}:{d.get('text') or ''}:{d.get('status') or ''}"] = (
            str(d["id"]))
    return out


def _held(a: Archive, record_id: str) -> bool:
    r: StoredRecord = record_by_id(a.rt.objects, record_id)
    return bool(a.rt.objects.stat(r.key, r.version_id).legal_hold)


def _family_after(a: Archive, parent: str, t: int) -> None:
    """An edit, a revoke, a reaction and a status of ``parent``, all after the case's
    dates and none matching its query."""
    a.post(N1.edit(ALICE, _wamid(), t, parent, "plans beta"))
    a.post(N1.revoke(ALICE, _wamid(), t + 60, parent))
    a.post(N1.reaction(ALICE, _wamid(), t + 120, parent, "\U0001f44d"))
    a.post(N1.status(ALICE, parent, t + 180, "read"))


def _family_ids(a: Archive) -> dict[str, str]:
    docs = _by_text(a)
    return {label: rid for label, rid in docs.items()
            if label.split(":")[1] in ("edit", "revoke", "reaction")
            or label.startswith("status:")}  # fmt: skip


# -- 1: a case hold holds the family members that arrive after it ----------------------


def test_case_hold_holds_family_arriving_after_the_hold(archive: Archive) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    parent, other = _wamid(), _wamid()
    a.post(N1.text(ALICE, parent, T0 + HOUR, "merger plans alpha", name="Alice"))
    a.post(N1.text(ALICE, other, T0 + 2 * HOUR, "lunch tomorrow", name="Alice"))
    case = _case(a, legal)
    r = a.client.post(f"/v1/cases/{case['id']}/holds", headers=legal, json={})
    assert r.status_code == 201, r.text
    hold = r.json()
    # After the hold: the family of the held message (outside the dates, not matching
    # the query), and the family of a message the case does not hold.
    _family_after(a, parent, T0 + 3 * DAY)
    a.post(N1.reaction(ALICE, _wamid(), T0 + 3 * DAY, other, "\U0001f44e"))
    family = _family_ids(a)
    assert len(family) == 5, family
    of_parent = {k: v for k, v in family.items() if "\U0001f44e" not in k}
    assert len(of_parent) == 4
    assert {k: _held(a, v) for k, v in of_parent.items()} == dict.fromkeys(of_parent, True)
    stranger = next(v for k, v in family.items() if "\U0001f44e" in k)
    assert not _held(a, stranger)
    # The hold's registry lists them: disposition (held_items) keeps them.
    held_items = a.rt.retention.holds.registry.held_items()
    for rid in of_parent.values():
        rec = record_by_id(a.rt.objects, rid)
        assert f"{rec.key}@{rec.version_id}" in held_items
    # Released through the case: its held targets go with it.
    r = a.client.post(f"/v1/cases/{case['id']}/holds/{hold['id']}/release", headers=legal)
    assert r.status_code == 200, r.text
    assert not list(a.rt.state.list(hold_targets_of(hold["id"])))
    assert not any(_held(a, v) for v in of_parent.values())


def test_plain_query_hold_holds_a_later_edit_of_a_held_message(archive: Archive) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    parent = _wamid()
    a.post(N1.text(ALICE, parent, T0 + HOUR, "merger plans alpha", name="Alice"))
    r = a.client.post("/v1/holds", headers=legal, json={"query": "merger",
                                                         "phone_number_id": N1.pnid})
    assert r.status_code == 201, r.text
    _family_after(a, parent, T0 + 3 * DAY)
    family = _family_ids(a)
    assert len(family) == 4, family
    assert all(_held(a, v) for v in family.values()), {k: _held(a, v) for k, v in family.items()}


def test_family_arriving_before_its_parent_is_indexed_is_held(archive: Archive) -> None:
    """The parent is held by a query hold only when indexed; its edit arrived (and passed
    the processor's hook) before that: the index follower's hook holds it."""
    a = archive
    legal = a.token(Role.LEGAL)
    r = a.client.post("/v1/holds", headers=legal, json={"query": "merger",
                                                         "phone_number_id": N1.pnid})
    assert r.status_code == 201, r.text
    parent = _wamid()
    for body in (N1.text(ALICE, parent, T0 + HOUR, "merger plans alpha", name="Alice"),
                 N1.edit(ALICE, _wamid(), T0 + 3 * DAY, parent, "plans beta")):  # fmt: skip
        post(a.client, body)
        a.rt.processor.sweep()  # written and logged; not yet indexed
    a.rt.follower.run_to_end()
    refresh = getattr(a.rt.index, "refresh", None)
    if callable(refresh):
        refresh()
    docs = _by_text(a)
    edit = next(v for k, v in docs.items() if k.startswith("message:edit:"))
    message = next(v for k, v in docs.items() if "merger plans alpha" in k)
    assert _held(a, message) and _held(a, edit)


# -- 2: a case's hold is released through the case, with custody ------------------------


def test_case_hold_release_goes_through_the_case_with_custody(archive: Archive) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    a.post(N1.text(ALICE, _wamid(), T0 + HOUR, "merger plans alpha", name="Alice"))
    case = _case(a, legal)
    cid = case["id"]
    hold = a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={}).json()
    r = a.client.delete(f"/v1/holds/{hold['id']}", headers=legal)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "hold_owned_by_case"
    assert a.client.get(f"/v1/holds/{hold['id']}", headers=legal).json()["status"] == "open"
    # Not a writer / not this case's hold / out of number scope.
    r = a.client.post(f"/v1/cases/{cid}/holds/{hold['id']}/release",
                      headers=a.token(Role.AUDITOR))  # fmt: skip
    assert r.status_code == 403
    r = a.client.post(f"/v1/cases/{cid}/holds/h_nope/release", headers=legal)
    assert r.status_code == 404 and r.json()["error"]["code"] == "hold_not_found"
    r = a.client.post(f"/v1/cases/{cid}/holds/{hold['id']}/release",
                      headers=a.token(Role.LEGAL, ["999000999"]))  # fmt: skip
    assert r.status_code == 404 and r.json()["error"]["code"] == "case_not_found"
    r = a.client.post(f"/v1/cases/{cid}/holds/{hold['id']}/release", headers=legal,
                      json={"reason": "matter settled"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "released" and "items" not in r.json()
    # A plain hold that only names the case as a label is still released the plain way.
    plain = a.client.post("/v1/holds", headers=legal, json={
        "case_id": cid, "query": "merger", "phone_number_id": N1.pnid}).json()  # fmt: skip
    assert a.client.delete(f"/v1/holds/{plain['id']}", headers=legal).status_code == 200
    # Closing: nothing is still open, so nothing is reported kept.
    r = a.client.post(f"/v1/cases/{cid}/close", headers=legal, json={})
    assert r.status_code == 200, r.text
    entries = a.client.get(f"/v1/cases/{cid}/custody", headers=legal).json()["entries"]
    assert [e["action"] for e in entries] == ["created", "hold_placed", "hold_released",
                                              "closed"]  # fmt: skip
    by = {e["action"]: e for e in entries}
    assert by["hold_released"]["details"] == {"hold_id": hold["id"],
                                              "reason": "matter settled"}
    assert by["hold_released"]["counts"]["released_versions"] > 0
    assert by["closed"]["details"]["kept_holds"] == []
    assert by["closed"]["counts"] == {"holds_released": 0, "holds_kept": 0}
    a.rt.audit.flush()
    events = a.client.get("/v1/audit", headers=a.token(Role.ADMIN),
                          params={"size": 1000}).json()["events"]  # fmt: skip
    mine = [e["event"] for e in events if (e.get("details") or {}).get("case_id") == cid]
    assert "case:hold_released" in mine


def test_close_reports_open_holds_as_kept(archive: Archive) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    a.post(N1.text(ALICE, _wamid(), T0 + HOUR, "merger plans alpha", name="Alice"))
    cid = _case(a, legal)["id"]
    h1 = a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={}).json()
    h2 = a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={}).json()
    r = a.client.post(f"/v1/cases/{cid}/holds/{h1['id']}/release", headers=legal)
    assert r.status_code == 200, r.text
    assert a.client.post(f"/v1/cases/{cid}/close", headers=legal, json={}).status_code == 200
    entries = a.client.get(f"/v1/cases/{cid}/custody", headers=legal).json()["entries"]
    closed = next(e for e in entries if e["action"] == "closed")
    assert closed["details"]["kept_holds"] == [h2["id"]]
    assert closed["counts"] == {"holds_released": 0, "holds_kept": 1}


# -- 3, 4: bad input -------------------------------------------------------------------

OVERFLOW = "9999-12-31T23:59:59-23:59"


def test_out_of_range_dates_are_400_on_every_route(archive: Archive) -> None:
    a = archive
    admin = a.token(Role.ADMIN)
    for field in ("date_from", "date_to"):
        scope = {"query": "merger", field: OVERFLOW, "numbers": [N1.pnid]}
        r = a.client.post("/v1/cases", headers=admin, json={
            "name": "n", "matter_number": "m", "scope": scope})  # fmt: skip
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "case_dates_invalid"
    cid = _case(a, admin)["id"]
    r = a.client.patch(f"/v1/cases/{cid}", headers=admin,
                       json={"scope": {"date_from": OVERFLOW, "numbers": [N1.pnid]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "case_dates_invalid", r.text
    r = a.client.put(f"/v1/cases/{cid}/scope", headers=admin,
                     json={"date_to": "0001-01-01T00:00:00+01:00", "numbers": [N1.pnid]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "case_dates_invalid", r.text


def test_a_scope_time_given_as_a_number_is_refused_not_read_as_unix_time(archive: Archive) -> None:
    admin = archive.token(Role.ADMIN)
    for value in (12345, 1.5, True):
        scope = {"query": "merger", "date_from": value, "numbers": [N1.pnid]}
        r = archive.client.post("/v1/cases", headers=admin, json={
            "name": "n", "matter_number": "m", "scope": scope})  # fmt: skip
        assert r.status_code == 422, (value, r.text)
        assert r.json()["error"]["code"] == "invalid_request" and "date_from" in r.text


def test_chunked_oversized_body_is_413(archive: Archive) -> None:
    a = archive
    admin = a.token(Role.ADMIN)
    big = b'{"name": "n", "matter_number": "m", "description": "' + b"x" * 70_000 + b'"}'

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    r = a.client.post("/v1/cases", headers={**admin, "Content-Type": "application/json"},
                      content=chunks())  # fmt: skip
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    assert a.client.get("/v1/cases", headers=admin).json()["cases"] == []
    # A small chunked body still works.
    small = b'{"name": "n", "matter_number": "m"}'
    r = a.client.post("/v1/cases", headers={**admin, "Content-Type": "application/json"},
                      content=iter([small[:10], small[10:]]))  # fmt: skip
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "a\x00b", "matter_number": "m"}, "case_name_invalid"),
    ({"name": "n", "matter_number": "m\x1b[2J"}, "case_matter_invalid"),
    ({"name": "n", "matter_number": "m", "description": "line\x07"}, "case_field_invalid"),
    ({"name": "n\n", "matter_number": "m"}, "case_name_invalid"),
    ({"name": "n", "matter_number": "m", "description": "\x7f"}, "case_field_invalid"),
])  # fmt: skip
def test_control_characters_are_refused(archive: Archive, body: dict[str, Any],
                                        code: str) -> None:  # fmt: skip
    r = archive.client.post("/v1/cases", headers=archive.token(Role.ADMIN), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


def test_control_characters_in_reasons_and_strict_booleans(archive: Archive) -> None:
    a = archive
    admin = a.token(Role.ADMIN)
    cid = _case(a, admin)["id"]
    r = a.client.post(f"/v1/cases/{cid}/holds", headers=admin, json={"reason": "x\x00"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "case_field_invalid"
    for value in ("yes", "true", 1, "1"):
        r = a.client.post(f"/v1/cases/{cid}/close", headers=admin,
                          json={"release_holds": value})  # fmt: skip
        assert r.status_code == 422, (value, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
    assert a.client.get(f"/v1/cases/{cid}", headers=admin).json()["status"] == "open"
    r = a.client.post(f"/v1/cases/{cid}/close", headers=admin, json={"release_holds": True})
    assert r.status_code == 200, r.text
