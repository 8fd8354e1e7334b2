"""Export and subject-access routes (issue 11) through the real app, on the embedded
default and on real MinIO + Elasticsearch: roles, number scope, bad options, the job view,
the streamed download (which verifies), and the audit trail."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from archiver.auth import Role
from archiver.export.verify import verify_package
from tests.integration.cases.seed import ALICE, BOB, DATE_FROM, DATE_TO, N1, N2, Archive


def make_case(a: Archive) -> str:
    r = a.client.post("/v1/cases", headers=a.token(Role.LEGAL), json={
        "name": "Acme v. Example", "matter_number": "2026-CV-0042",
        "custodians": {"numbers": [N1.pnid], "contacts": [ALICE]},
        "scope": {"query": "merger", "date_from": DATE_FROM, "date_to": DATE_TO,
                  "numbers": [N1.pnid]}})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def finish(a: Archive, export_id: str, headers: dict[str, str]) -> dict[str, Any]:
    a.rt.export_jobs().run_until_idle(timeout=300)  # the test app runs no inline workers
    r = a.client.get(f"/v1/exports/{export_id}", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def download(a: Archive, export_id: str, headers: dict[str, str]) -> bytes:
    r = a.client.get(f"/v1/exports/{export_id}/download", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    return r.content


def test_export_routes_roles_scope_and_download(archive: Archive, tmp_path: Path) -> None:
    a = archive
    a.seed()
    cid = make_case(a)
    url = f"/v1/cases/{cid}/exports"
    body = {"bates_prefix": "ACME-1", "bates_start": 7, "time_zone": "Europe/Paris",
            "formats": ["rsmf", "natives", "text", "loadfile"]}  # fmt: skip
    # Unauthenticated, wrong roles.
    assert a.client.post(url, json=body).status_code == 401
    for role in (Role.AUDITOR, Role.SERVICE, Role.COMPLIANCE_OFFICER):
        r = a.client.post(url, headers=a.token(role), json=body)
        assert r.status_code == 403, (role, r.text)
    # Another number's token: the case does not exist for it.
    r = a.client.post(url, headers=a.token(Role.LEGAL, [N2.pnid]), json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "case_not_found"
    # Bad options.
    legal = a.token(Role.LEGAL, [N1.pnid])
    for bad, code in (({"bates_prefix": "A/B"}, "export_bates_prefix_invalid"),
                      ({"bates_prefix": "ACME\u00fe"}, "export_bates_prefix_invalid"),
                      ({"bates_start": 0}, "bates_start_invalid"),
                      ({"time_zone": "Mars/Olympus"}, "export_time_zone_invalid"),
                      ({"formats": ["pst"]}, "export_format_invalid")):  # fmt: skip
        r = a.client.post(url, headers=legal, json={**body, **bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (bad, r.text)
    r = a.client.post(url, headers=legal, json={**body, "surprise": 1})
    assert r.status_code == 422
    r = a.client.post(url, headers=legal, json={**body, "bates_prefix": "A" * 21})
    assert r.status_code == 422
    # The export, by a token scoped to the case's number.
    r = a.client.post(url, headers=legal, json=body)
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    assert r.json()["state"] == "queued"
    officer = a.token(Role.COMPLIANCE_OFFICER, [N1.pnid])
    view = finish(a, export_id, officer)
    assert view["state"] == "succeeded" and view["percent"] == 100.0
    assert view["counts"]["records"] == 7 and view["counts"]["transcripts"] == 0
    assert view["errors"] == []
    # Number scope on reading: another number's officer does not see it.
    for path in (f"/v1/exports/{export_id}", f"/v1/exports/{export_id}/download"):
        r = a.client.get(path, headers=a.token(Role.COMPLIANCE_OFFICER, [N2.pnid]))
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        assert a.client.get(path, headers=a.token(Role.AUDITOR)).status_code == 403
        assert a.client.get(path).status_code == 401
    assert a.client.get("/v1/exports/nope", headers=officer).status_code == 404
    data = download(a, export_id, officer)
    package = tmp_path / "export.zip"
    package.write_bytes(data)
    result = verify_package(package, a.rt.proofs.public_key())
    assert result.ok, result.summary()
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    assert sorted(r["bates"] for r in manifest["records"])[0] == "ACME-100000007"
    # Audited: requested, finished (custody), viewed, downloaded.
    a.rt.audit.flush()
    events = a.client.get("/v1/audit", headers=a.token(Role.ADMIN),
                          params={"size": 1000}).json()["events"]  # fmt: skip
    mine = [e["event"] for e in events
            if (e.get("details") or {}).get("export_id") == export_id]  # fmt: skip
    assert {"export:requested", "export:finished", "export:viewed",
            "export:downloaded"} <= set(mine), mine  # fmt: skip


def test_export_options_refuse_coerced_types_and_host_time_zones(archive: Archive) -> None:
    """A string or number for a boolean, a boolean or string for the Bates start: 422 (as
    for cases), not silently read as something else; a time zone that is the host's
    setting or a leap-second variant rather than an IANA name: 400."""
    a = archive
    cid = make_case(a)
    url = f"/v1/cases/{cid}/exports"
    legal = a.token(Role.LEGAL, [N1.pnid])
    for bad in ({"include_media": "yes"}, {"include_media": 1}, {"include_native_raw": "true"},
                {"bates_start": "7"}, {"bates_start": True}, {"formats": [1]}):  # fmt: skip
        r = a.client.post(url, headers=legal, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (
            bad, r.text)
    officer = a.token(Role.COMPLIANCE_OFFICER, [N1.pnid])
    for zone in ("localtime", "posixrules", "right/UTC", "posix/Europe/Paris"):
        r = a.client.post(url, headers=legal, json={"time_zone": zone})
        assert r.status_code == 400, (zone, r.text)
        assert r.json()["error"]["code"] == "export_time_zone_invalid"
        r = a.client.post("/v1/subject-access", headers=officer,
                          json={"contact": ALICE, "time_zone": zone})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["code"] == "export_time_zone_invalid"
    r = a.client.post(url, headers=legal, json={"time_zone": "America/New_York",
                                                "include_media": False, "bates_start": 3})
    assert r.status_code == 202, r.text


def test_a_bates_start_past_the_label_width_never_bricks_the_case(archive: Archive) -> None:
    """A start the 8-digit labels cannot show is refused (400), and one too near the top
    for the case's items fails its job ``bates_exhausted`` with nothing reserved, so the
    next export, from a lower start, succeeds. Before: 999,999,990 was accepted, its
    numbers were kept, and every later export of the case failed "does not fit 8 digits"."""
    a = archive
    a.seed()
    cid = make_case(a)
    url = f"/v1/cases/{cid}/exports"
    legal = a.token(Role.LEGAL, [N1.pnid])
    body = {"formats": ["rsmf", "natives", "text", "loadfile"]}
    for start in (10**8, 999_999_990):
        r = a.client.post(url, headers=legal, json={**body, "bates_start": start})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bates_start_invalid"
    r = a.client.post(url, headers=legal, json={**body, "bates_start": 99_999_998})
    assert r.status_code == 202, r.text
    view = finish(a, r.json()["id"], legal)
    assert view["state"] == "failed", view
    assert [e["code"] for e in view["errors"]] == ["bates_exhausted"], view
    assert a.rt.cases.bates.highest(cid) is None  # nothing reserved
    r = a.client.post(url, headers=legal, json={**body, "bates_start": 5})
    assert r.status_code == 202, r.text
    view = finish(a, r.json()["id"], legal)
    assert view["state"] == "succeeded", view
    highest = a.rt.cases.bates.highest(cid)
    assert highest is not None and 5 <= highest < 10**8


def test_subject_access_exports_one_contact_across_numbers(archive: Archive,
                                                          tmp_path: Path) -> None:
    a = archive
    a.seed()
    body = {"contact": ALICE}
    assert a.client.post("/v1/subject-access", json=body).status_code == 401
    for role in (Role.LEGAL, Role.AUDITOR, Role.SERVICE):
        assert a.client.post("/v1/subject-access", headers=a.token(role),
                             json=body).status_code == 403, role  # fmt: skip
    r = a.client.post("/v1/subject-access", headers=a.token(Role.COMPLIANCE_OFFICER),
                      json={"contact": "not a contact!"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "export_contact_invalid"
    officer = a.token(Role.COMPLIANCE_OFFICER)
    r = a.client.post("/v1/subject-access", headers=officer, json=body)
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    assert ALICE not in json.dumps(r.json())  # the contact stays out of views
    view = finish(a, export_id, officer)
    assert view["state"] == "succeeded", view
    assert ALICE not in json.dumps(view)
    # Legal may not request one, so may not read or download one either.
    legal = a.token(Role.LEGAL)
    for path in (f"/v1/exports/{export_id}", f"/v1/exports/{export_id}/download"):
        r = a.client.get(path, headers=legal)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found", path
    data = download(a, export_id, officer)
    package = tmp_path / "sar.zip"
    package.write_bytes(data)
    assert verify_package(package, a.rt.proofs.public_key()).ok
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = zf.namelist()
    assert "transcripts/subject-access.pdf" in names
    assert zf.read("transcripts/subject-access.pdf").startswith(b"%PDF")
    doc = json.loads(zf.read("documents/subject-access.json"))
    texts = [m.get("text", "") for c in doc["conversations"] for m in c["messages"]]
    # Alice's messages on both numbers; nothing of Bob's.
    assert "merger on the other number" in texts and "lunch tomorrow" in texts
    assert not any("bob" in t for t in texts)
    numbers = {r["object_key"] for r in json.loads(zf.read("manifest.json"))["records"]}
    assert numbers and BOB not in zf.read("loadfile.dat").decode("utf-8-sig")
    # A token scoped to N1 sees only N1's records of her.
    scoped = a.token(Role.COMPLIANCE_OFFICER, [N1.pnid])
    r = a.client.post("/v1/subject-access", headers=scoped, json=body)
    finish(a, r.json()["id"], scoped)
    narrow = zipfile.ZipFile(io.BytesIO(download(a, r.json()["id"], scoped)))
    doc = json.loads(narrow.read("documents/subject-access.json"))
    texts = [m.get("text", "") for c in doc["conversations"] for m in c["messages"]]
    assert "lunch tomorrow" in texts and "merger on the other number" not in texts
