"""Cases through the real app (issue 11 item 1), on the embedded backends (local folder +
SQLite) and on real MinIO + Elasticsearch: scope resolution, holding the scope, closing
with and without releasing, the chain of custody, and number scope."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.audit import Actor
from archiver.auth import Role
from archiver.cases.scope import records_in_scope
from archiver.retention.common import StoredRecord, record_by_id
from tests.integration.cases.seed import ALICE, DATE_FROM, DATE_TO, N1, N2, Archive, Seeded

ADMIN_ACTOR = Actor(token_id="t-test", name="export-job", role="admin")


@pytest.fixture
def seeded(archive: Archive) -> Seeded:
    s = archive.seed()
    assert len(s.in_scope) == 7 and len(s.out_of_scope) == 7, (s.in_scope, s.out_of_scope)
    return s


def case_body(**scope: Any) -> dict[str, Any]:
    return {
        "name": "Acme v. Example", "matter_number": "2026-CV-0042",
        "description": "merger discussions",
        "custodians": {"numbers": [N1.pnid], "contacts": [ALICE]},
        "scope": {"query": "merger", "date_from": DATE_FROM, "date_to": DATE_TO,
                  "numbers": [N1.pnid], **scope},
    }  # fmt: skip


def create(a: Archive, headers: dict[str, str], **scope: Any) -> dict[str, Any]:
    r = a.client.post("/v1/cases", headers=headers, json=case_body(**scope))
    assert r.status_code == 201, r.text
    return dict(r.json())


def held(a: Archive, record: StoredRecord) -> bool:
    return bool(a.rt.objects.stat(record.key, record.version_id).legal_hold)


def records(a: Archive, ids: dict[str, str]) -> dict[str, StoredRecord]:
    return {label: record_by_id(a.rt.objects, rid) for label, rid in ids.items()}


# -- scope resolution --------------------------------------------------------------------


def test_records_in_scope_is_exactly_the_seeded_scope(archive: Archive, seeded: Seeded) -> None:
    a = archive
    case = create(a, a.token(Role.LEGAL))
    service = a.rt.cases
    got = list(service.records_in_scope(case["id"], ADMIN_ACTOR))
    assert len(got) == len(set(got))  # each record once
    assert set(got) == set(seeded.in_scope.values())
    assert not set(got) & set(seeded.out_of_scope.values())
    # The pure function gives the same; and every kind an export needs is there.
    assert set(records_in_scope(a.rt.index, case)) == set(got)
    kinds = {label.split(":")[0] + ":" + label.split(":")[1] for label in seeded.in_scope}
    assert kinds == {"message:text", "echo:text", "history_message:text", "status:status",
                     "message:reaction", "message:edit", "message:revoke"}  # fmt: skip


def test_records_in_scope_pages_past_one_page(archive: Archive) -> None:
    """More hits than one index page (1000 per page here would need 1000 posts): the page
    size is lowered so the cursor walk is exercised on both adapters."""
    import archiver.cases.scope as scope_module

    a = archive
    ids = []
    for n in range(7):
        a.post(N1.text(ALICE, f"wamid.P{n:04d}", 1_767_225_600 + 60 * n, f"merger page {n}"))
    ids = [d["id"] for d in a.docs() if "merger page" in str(d.get("text"))]
    case = create(a, a.token(Role.ADMIN))
    old = scope_module.PAGE
    scope_module.PAGE = 2
    try:
        got = list(records_in_scope(a.rt.index, case))
    finally:
        scope_module.PAGE = old
    assert sorted(got) == sorted(ids) and len(ids) == 7


# -- holds -------------------------------------------------------------------------------


def test_hold_the_scope_holds_its_records_and_close_keeps_them(
    archive: Archive, seeded: Seeded
) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    case = create(a, legal)
    r = a.client.post(f"/v1/cases/{case['id']}/holds", headers=legal, json={"reason": "lit"})
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["case_id"] == case["id"] and hold["status"] == "open"
    inside, outside = records(a, seeded.in_scope), records(a, seeded.out_of_scope)
    assert all(held(a, rec) for rec in inside.values()), [k for k, v in inside.items()
                                                          if not held(a, v)]
    assert not any(held(a, rec) for rec in outside.values())
    detail = a.client.get(f"/v1/cases/{case['id']}", headers=legal).json()
    assert [h["id"] for h in detail["holds"]] == [hold["id"]]

    # Closing without release_holds: the case is closed, its hold stays placed.
    r = a.client.post(f"/v1/cases/{case['id']}/close", headers=legal, json={})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    assert r.json()["holds"][0]["status"] == "open"
    assert all(held(a, rec) for rec in inside.values())
    # A closed case takes no new hold and no scope change.
    r = a.client.post(f"/v1/cases/{case['id']}/holds", headers=legal)
    assert r.status_code == 409 and r.json()["error"]["code"] == "case_closed"
    r = a.client.patch(f"/v1/cases/{case['id']}", headers=legal, json={"name": "x"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "case_closed"


def test_close_with_release_releases_only_this_cases_holds(
    archive: Archive, seeded: Seeded
) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    first = create(a, legal)
    # A second case over part of the same scope (the echo only), and a plain hold that
    # names the first case only as a label: neither is the first case's to release.
    second = create(a, legal, query='"reply from the phone"')
    h1 = a.client.post(f"/v1/cases/{first['id']}/holds", headers=legal).json()
    h2 = a.client.post(f"/v1/cases/{second['id']}/holds", headers=legal).json()
    plain = a.client.post("/v1/holds", headers=legal, json={
        "case_id": first["id"], "query": "lunch", "phone_number_id": N1.pnid}).json()  # fmt: skip
    r = a.client.post(f"/v1/cases/{first['id']}/close", headers=legal,
                      json={"release_holds": True, "reason": "settled"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert {h["id"]: h["status"] for h in r.json()["holds"]} == {h1["id"]: "released"}
    assert a.client.get(f"/v1/holds/{h2['id']}", headers=legal).json()["status"] == "open"
    assert a.client.get(f"/v1/holds/{plain['id']}", headers=legal).json()["status"] == "open"
    inside = records(a, seeded.in_scope)
    echo = next(v for k, v in inside.items() if k.startswith("echo:"))
    assert held(a, echo)  # the second case still holds it
    family_of_echo = ("echo:", "status:", "message:reaction")
    others = [v for k, v in inside.items() if not k.startswith(family_of_echo)]
    assert others and not any(held(a, rec) for rec in others)
    lunch = next(v for k, v in records(a, seeded.out_of_scope).items() if "lunch" in k)
    assert held(a, lunch)  # the label-only hold was not the case's


# -- chain of custody --------------------------------------------------------------------


def test_custody_lists_every_action_and_each_is_audited(archive: Archive, seeded: Seeded) -> None:
    a = archive
    legal = a.token(Role.LEGAL)
    case = create(a, legal)
    cid = case["id"]
    r = a.client.put(f"/v1/cases/{cid}/scope", headers=legal, json={
        "query": "merger OR lunch", "date_from": DATE_FROM, "date_to": DATE_TO,
        "numbers": [N1.pnid]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert a.client.post(f"/v1/cases/{cid}/holds", headers=legal).status_code == 201
    assert a.client.post(f"/v1/cases/{cid}/close", headers=legal,
                         json={"release_holds": True}).status_code == 200  # fmt: skip
    assert a.client.post(f"/v1/cases/{cid}/reopen", headers=legal).status_code == 200
    service = a.rt.cases
    service.export_requested(cid, ADMIN_ACTOR, export_id="x_1", options={"formats": ["rsmf"]})
    service.export_finished(cid, ADMIN_ACTOR, export_id="x_1", state="done",
                            counts={"records": 9}, manifest_sha256="ab" * 32)  # fmt: skip
    r = a.client.get(f"/v1/cases/{cid}/custody", headers=a.token(Role.COMPLIANCE_OFFICER))
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    assert [e["action"] for e in entries] == [
        "created", "scope_updated", "hold_placed", "hold_released", "closed", "reopened",
        "export_requested", "export_finished"]  # fmt: skip
    assert all(e["at"] and e["actor"]["name"] for e in entries)
    by = {e["action"]: e for e in entries}
    assert by["hold_placed"]["counts"]["held_versions"] > 0
    assert by["hold_released"]["counts"]["released_versions"] == \
        by["hold_placed"]["counts"]["held_versions"]
    assert by["closed"]["counts"] == {"holds_released": 1, "holds_kept": 0}
    assert by["export_finished"]["counts"] == {"records": 9}
    assert by["scope_updated"]["details"]["changed"] == ["scope"]
    assert entries[0]["actor"]["role"] == "legal"

    a.rt.audit.flush()
    admin = a.token(Role.ADMIN)
    events = a.client.get("/v1/audit", headers=admin, params={"size": 1000}).json()
    mine = [e for e in events["events"] if (e.get("details") or {}).get("case_id") == cid]
    assert [e["event"] for e in mine] == [
        "case:created", "case:updated", "case:hold_placed", "case:hold_released",
        "case:closed", "case:reopened", "export:requested", "export:finished"]  # fmt: skip
    assert all(e["numbers"] == [N1.pnid] for e in mine)


# -- roles and number scope --------------------------------------------------------------

ROLES = list(Role)
WRITERS = {Role.ADMIN, Role.LEGAL}
READERS = {Role.ADMIN, Role.LEGAL, Role.COMPLIANCE_OFFICER}


def _routes(cid: str) -> list[tuple[str, str, dict[str, Any] | None, bool]]:
    """(method, path, body, writes)."""
    return [
        ("GET", f"/v1/cases/{cid}", None, False),
        ("GET", f"/v1/cases/{cid}/custody", None, False),
        ("PATCH", f"/v1/cases/{cid}", {"description": "changed"}, True),
        ("PUT", f"/v1/cases/{cid}/scope", {"query": "merger", "numbers": [N1.pnid]}, True),
        ("POST", f"/v1/cases/{cid}/holds", {}, True),
        ("POST", f"/v1/cases/{cid}/close", {}, True),
        ("POST", f"/v1/cases/{cid}/reopen", None, True),
    ]


def test_every_route_every_role_in_and_out_of_number_scope(archive: Archive) -> None:
    a = archive
    a.post(N1.text(ALICE, "wamid.R1", 1_767_229_200, "merger plans alpha"))
    a.post(N2.text(ALICE, "wamid.R2", 1_767_229_200, "merger other"))
    for role in ROLES:
        for numbers, visible in (([N1.pnid], True), ([N2.pnid], False), (None, True)):
            headers = a.token(role, numbers)
            # The case under test: number N1, made by an unscoped admin each time.
            case = create(a, a.token(Role.ADMIN), query="merger")
            for method, path, body, writes in _routes(case["id"]):
                r = a.client.request(method, path, headers=headers, json=body)
                allowed = role in (WRITERS if writes else READERS)
                if not allowed:
                    expect = 403
                elif not visible:
                    expect = 404
                elif path.endswith("/reopen"):
                    expect = 200  # closed just before by the close route
                else:
                    expect = 201 if path.endswith("/holds") else 200
                assert r.status_code == expect, (role, numbers, method, path, r.text)
                if expect == 404:
                    assert r.json()["error"]["code"] == "case_not_found"
                if expect == 403:
                    assert r.json()["error"]["code"] == "role_forbidden"
            # Listing: visible only in scope; creating: writers only, never beyond scope.
            r = a.client.get("/v1/cases", headers=headers)
            if role not in READERS:
                assert r.status_code == 403
            else:
                ids = [c["id"] for c in r.json()["cases"]]
                assert (case["id"] in ids) == visible, (role, numbers)
            r = a.client.post("/v1/cases", headers=headers, json=case_body())
            if role not in WRITERS:
                assert r.status_code == 403, (role, r.text)
            elif numbers == [N2.pnid]:
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "case_number_forbidden"
            else:
                assert r.status_code == 201, r.text
    r = a.client.get("/v1/cases")
    assert r.status_code == 401


def test_scoped_token_cannot_widen_or_see_an_unscoped_case(archive: Archive) -> None:
    a = archive
    scoped = a.token(Role.LEGAL, [N1.pnid])
    # No numbers given: the case takes the token's numbers, not "every number".
    r = a.client.post("/v1/cases", headers=scoped,
                      json={"name": "n", "matter_number": "m", "scope": {"query": "x"}})
    assert r.status_code == 201, r.text
    assert r.json()["scope"]["numbers"] == [N1.pnid]
    cid = r.json()["id"]
    for scope in ({"numbers": [N1.pnid, N2.pnid]}, {"numbers": [N2.pnid]}):
        r = a.client.put(f"/v1/cases/{cid}/scope", headers=scoped, json=scope)
        assert r.status_code == 403 and r.json()["error"]["code"] == "case_number_forbidden"
    r = a.client.patch(f"/v1/cases/{cid}", headers=scoped,
                       json={"custodians": {"numbers": [N2.pnid]}})  # fmt: skip
    assert r.status_code == 403, r.text
    # An unscoped admin's case over every number is invisible to the scoped token.
    r = a.client.post("/v1/cases", headers=a.token(Role.ADMIN),
                      json={"name": "all", "matter_number": "m", "scope": {"query": "x"}})
    assert r.status_code == 201 and r.json()["scope"]["numbers"] is None
    every = r.json()["id"]
    assert a.client.get(f"/v1/cases/{every}", headers=scoped).status_code == 404
    assert a.client.post(f"/v1/cases/{every}/close", headers=scoped,
                         json={"release_holds": True}).status_code == 404  # fmt: skip
    assert a.client.get(f"/v1/cases/{every}", headers=a.token(Role.ADMIN)).json()["status"] \
        == "open"


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"matter_number": "m"}, 422, "invalid_request"),
    ({"name": " ", "matter_number": "m"}, 400, "case_name_invalid"),
    ({"name": "n", "matter_number": ""}, 400, "case_matter_invalid"),
    ({"name": "n", "matter_number": "m", "extra": 1}, 422, "invalid_request"),
    ({"name": "n", "matter_number": "m", "scope": {"numbers": ["+1 555"]}}, 400,
     "case_number_invalid"),
    ({"name": "n", "matter_number": "m", "scope": {"numbers": []}}, 400, "case_number_invalid"),
    ({"name": "n", "matter_number": "m", "custodians": {"contacts": ['a" OR "b']}}, 400,
     "case_contact_invalid"),
    ({"name": "n", "matter_number": "m", "scope": {"query": "(unclosed"}}, 400, None),
    ({"name": "n", "matter_number": "m", "scope": {"date_from": "2026-02-01",
                                                    "date_to": "2026-01-01"}}, 400,
     "case_dates_invalid"),
    ({"name": "n", "matter_number": "m", "scope": {"date_from": "yesterday"}}, 422,
     "invalid_request"),
    ({"name": "n", "matter_number": "m", "custodians": {"numbers": [N2.pnid]},
      "scope": {"numbers": [N1.pnid]}}, 400, "case_custodian_outside_scope"),
    ({"name": "n", "matter_number": "m", "scope": {"numbers": [str(n + 1) for n in range(101)]}},
     422, "invalid_request"),
    ({"name": "n" * 201, "matter_number": "m"}, 422, "invalid_request"),
])  # fmt: skip
def test_bad_bodies_get_a_clear_error(
    archive: Archive, body: dict[str, Any], status: int, code: str | None
) -> None:
    r = archive.client.post("/v1/cases", headers=archive.token(Role.ADMIN), json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == (code or error["code"]) and error["code"].startswith(
        ("case_", "invalid_request", "query_"))


def test_oversized_malformed_and_unknown(archive: Archive) -> None:
    a = archive
    admin = a.token(Role.ADMIN)
    big = b'{"name": "n", "matter_number": "m", "description": "' + b"x" * 70_000 + b'"}'
    r = a.client.post("/v1/cases", headers={**admin, "Content-Type": "application/json"},
                      content=big)  # fmt: skip
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = a.client.post("/v1/cases", headers={**admin, "Content-Type": "application/json"},
                      content=b"{not json")  # fmt: skip
    assert r.status_code == 422
    for path in ("/v1/cases/case_aaaaaaaaaaaaaaaa", "/v1/cases/..%2Fholds%2F_open",
                 "/v1/cases/nope"):  # fmt: skip
        r = a.client.get(path, headers=admin)
        assert r.status_code == 404 and r.json()["error"]["code"] in ("case_not_found",
                                                                      "not_found")
    case = create(a, admin)
    r = a.client.post(f"/v1/cases/{case['id']}/reopen", headers=admin)
    assert r.status_code == 409 and r.json()["error"]["code"] == "case_not_closed"
    r = a.client.post("/v1/cases", headers=admin, json={
        "name": "empty", "matter_number": "m", "scope": {}})  # fmt: skip
    assert r.status_code == 201
    r = a.client.post(f"/v1/cases/{r.json()['id']}/holds", headers=admin)
    assert r.status_code == 400 and r.json()["error"]["code"] == "case_scope_empty"


def test_a_number_only_case_holds_its_numbers_records_only(
    archive: Archive, seeded: Seeded
) -> None:
    """No query, dates or contacts: the case (a scoped token's numbers) holds every record
    of its number and nothing of the other number."""
    a = archive
    scoped = a.token(Role.LEGAL, [N1.pnid])
    r = a.client.post("/v1/cases", headers=scoped, json={"name": "n1", "matter_number": "m"})
    assert r.status_code == 201 and r.json()["scope"]["numbers"] == [N1.pnid]
    r = a.client.post(f"/v1/cases/{r.json()['id']}/holds", headers=scoped)
    assert r.status_code == 201, r.text
    assert r.json()["numbers"] == [N1.pnid]
    everything = records(a, {**seeded.in_scope, **seeded.out_of_scope})
    for label, rec in everything.items():
        assert held(a, rec) == (rec.phone_number_id == N1.pnid), label
    assert any(rec.phone_number_id == N2.pnid for rec in everything.values())
