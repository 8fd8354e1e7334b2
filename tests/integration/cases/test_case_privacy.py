"""A case's privacy edges (attack-3 F5, F7b): an erased custodian contact leaves the case's
working state, its custody and its exports (replaced by the erasure's marker, the scope
never widening); the DAT's CUSTODIAN is what the case covers, not the token; the scope
walk's scratch file lands in the export spool. Embedded default and real MinIO + ES."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.export import dat
from archiver.keyspace import case_key, custody_prefix
from tests.integration.cases.seed import ALICE, BOB, N1, Archive


def _export(a: Archive, case_id: str, headers: dict[str, str]) -> zipfile.ZipFile:
    r = a.client.post(f"/v1/cases/{case_id}/exports", headers=headers,
                      json={"formats": ["rsmf", "natives", "text", "loadfile"]})  # fmt: skip
    assert r.status_code == 202, r.text
    a.rt.export_jobs().run_until_idle(timeout=300)
    r = a.client.get(f"/v1/exports/{r.json()['id']}/download", headers=headers)
    assert r.status_code == 200, r.text
    return zipfile.ZipFile(io.BytesIO(r.content))


def _rows(zf: zipfile.ZipFile) -> list[dict[str, str]]:
    columns, rows = dat.parse(zf.read("loadfile.dat").decode("utf-8"))
    assert "CUSTODIAN" in columns and rows
    return rows


def _state_of(a: Archive, case_id: str) -> str:
    """Every working-state value of the case: its document and its custody entries."""
    keys = [case_key(case_id), *a.rt.state.list(custody_prefix(case_id))]
    values = [a.rt.state.get(k) for k in keys]
    return "\n".join(v.value.decode() for v in values if v is not None)


def test_an_erased_custodian_contact_leaves_the_case_custody_and_export(
    archive: Archive,
) -> None:
    a = archive
    a.seed()
    legal = a.token(Role.LEGAL, [N1.pnid])
    r = a.client.post("/v1/cases", headers=legal, json={
        "name": "Acme v. Example", "matter_number": "M-1",
        "custodians": {"numbers": [N1.pnid], "contacts": [ALICE]},
        "scope": {"query": "merger", "numbers": [N1.pnid]}})  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    hold = a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={})
    assert hold.status_code == 201, hold.text
    r = a.client.post(f"/v1/cases/{cid}/close", headers=legal, json={"release_holds": True})
    assert r.status_code == 200, r.text
    # Custody written from now on names the contact by reference only; the API shows it.
    raw = _state_of(a, cid)
    assert raw.count(ALICE) == 2, raw  # the case's custodians and its reference table
    assert ALICE in a.client.get(f"/v1/cases/{cid}/custody", headers=legal).text

    erased = a.rt.retention.erasure.erase(N1.pnid, ALICE, by="dpo")
    marker = f"erased:{erased['erasure_id']}"

    case = a.client.get(f"/v1/cases/{cid}", headers=legal)
    assert case.status_code == 200 and ALICE not in case.text, case.text
    assert case.json()["custodians"]["contacts"] == [marker]
    custody = a.client.get(f"/v1/cases/{cid}/custody", headers=legal)
    assert custody.status_code == 200 and ALICE not in custody.text, custody.text
    entries = custody.json()["entries"]
    assert marker in json.dumps(entries[0]["details"])  # ``created`` shows the marker
    gone = [e for e in entries if e["action"] == "custodian_erased"]
    assert len(gone) == 1 and gone[0]["actor"]["name"] == "system", entries
    assert ALICE not in _state_of(a, cid)
    held = case.json()["holds"]
    assert len(held) == 1 and held[0]["status"] == "released", held
    # The released hold's stored query forgets the contact too.
    assert ALICE not in json.dumps(a.rt.retention.holds.get(held[0]["id"]))
    # The case's audit events written with references never named the contact.
    a.rt.audit.flush()
    events = a.client.get("/v1/audit", headers=a.token(Role.ADMIN),
                          params={"size": 1000}).json()["events"]  # fmt: skip
    mine = [e for e in events if (e.get("details") or {}).get("case_id") == cid]
    assert "case:custodian_erased" in [e["event"] for e in mine]
    assert ALICE not in json.dumps(mine)

    # A second erasure run (the hook is idempotent) changes nothing more.
    before = _state_of(a, cid)
    a.rt._erase_custodians(N1.pnid, [erased["subject"]])
    assert _state_of(a, cid) == before

    # The export: the marker, never the number; the erased records as tombstones; the
    # scope did not widen to every contact (Bob's "merger" stays out).
    r = a.client.post(f"/v1/cases/{cid}/reopen", headers=legal)
    assert r.status_code == 200, r.text
    zf = _export(a, cid, legal)
    rows = _rows(zf)
    assert {row["CUSTODIAN"] for row in rows} == {f"{N1.pnid}, {marker}"}
    # Only what that erasure listed (its tombstones; a subject-less record of its shared
    # slots it lists too): nothing of another contact.
    procedure = json.loads(a.rt.state.get(
        f"erasures/{erased['subject']}/{erased['erasure_id']}").value)  # fmt: skip
    assert {row["RECORDID"] for row in rows} <= set(procedure["record_ids"]), rows
    assert any(row["ERASED"] for row in rows)
    assert ALICE not in zf.read("chain-of-custody.json").decode()
    assert marker in zf.read("chain-of-custody.json").decode()
    assert BOB not in zf.read("loadfile.dat").decode("utf-8")
    assert ALICE not in zf.read("loadfile.dat").decode("utf-8")

    # A marker cannot be forged into another case, and stays when a case is edited.
    r = a.client.post("/v1/cases", headers=legal, json={
        "name": "Forged", "matter_number": "M-2",
        "custodians": {"contacts": [marker]}, "scope": {"numbers": [N1.pnid]}})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "case_contact_invalid"
    r = a.client.patch(f"/v1/cases/{cid}", headers=legal, json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["custodians"]["contacts"] == [marker], r.text


def test_the_dat_custodian_is_the_case_number_not_the_admin_token(archive: Archive) -> None:
    a = archive
    a.seed()
    admin = a.token(Role.ADMIN)  # every number
    r = a.client.post("/v1/cases", headers=admin, json={
        "name": "One number", "matter_number": "M-3",
        "scope": {"query": "merger", "numbers": [N1.pnid]}})  # fmt: skip
    assert r.status_code == 201, r.text
    rows = _rows(_export(a, r.json()["id"], admin))
    assert {row["CUSTODIAN"] for row in rows} == {N1.pnid}


def test_the_scope_walk_spools_in_the_export_spool(archive: Archive, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a = archive
    a.seed()
    spool = a.rt.job_service.spool
    assert spool is not None
    made: list[Path] = []
    real = tempfile.mkstemp

    def recording(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)
        if Path(name).name.startswith("wa-scope-"):
            made.append(Path(name))
        return fd, name

    monkeypatch.setattr("archiver.cases.scope.tempfile.mkstemp", recording)
    legal = a.token(Role.LEGAL, [N1.pnid])
    r = a.client.post("/v1/cases", headers=legal, json={
        "name": "Spool", "matter_number": "M-4",
        "custodians": {"contacts": [ALICE]}, "scope": {"query": "merger",
                                                       "numbers": [N1.pnid]}})  # fmt: skip
    cid = r.json()["id"]
    assert a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={}).status_code == 201
    _rows(_export(a, cid, legal))
    assert len(made) >= 2, made  # the hold's family walk and the export's
    root = spool.root.resolve()
    assert all(p.resolve().is_relative_to(root) for p in made), (root, made)
