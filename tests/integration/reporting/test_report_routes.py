"""``/v1/reports`` × roles × number scope, on the embedded default and real MinIO + ES."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from tests.integration.reporting.support import PN, SILENT, seeded_archive

pytestmark = pytest.mark.integration


def _bearer(rt: Any, role: Role, numbers: list[str] | None = None) -> dict[str, str]:
    plain, _ = rt.tokens.create(role=role, name=f"t-{role.value}", numbers=numbers)
    return {"Authorization": f"Bearer {plain}"}


@pytest.mark.parametrize("backend", ["embedded", "servers"])
def test_routes_roles_scope_and_bad_input(request: Any, tmp_path: Path, backend: str) -> None:
    with seeded_archive(request, tmp_path, backend) as s:
        c, rt = s.client, s.runtime
        body = {"regulation": "gdpr", "from": s.start.isoformat(), "to": s.end.isoformat(),
                "numbers": [PN], "sample_size": 2}
        # Unauthenticated, and roles without report access.
        assert c.post("/v1/reports", json=body).status_code == 401
        for role in (Role.LEGAL, Role.SERVICE):
            r = c.post("/v1/reports", json=body, headers=_bearer(rt, role))
            assert r.status_code == 403, (role, r.text)
        # Bad input: a clear 4xx with a machine code, no job made.
        bad = [({**body, "regulation": "sox"}, 422), ({**body, "to": body["from"]}, 400),
               ({**body, "sample_size": 0}, 422), ({**body, "extra": 1}, 422),
               ({**body, "from": "2026-01-01T10:30:00"}, 400)]
        auditor = _bearer(rt, Role.AUDITOR)
        for payload, status in bad:
            r = c.post("/v1/reports", json=payload, headers=auditor)
            assert r.status_code == status, (payload, r.text)
            assert r.json()["error"]["code"], r.text
        assert c.get("/v1/reports", headers=auditor).json()["reports"] == []
        # A token scoped to another number cannot report on PN.
        other = _bearer(rt, Role.COMPLIANCE_OFFICER, numbers=[SILENT])
        r = c.post("/v1/reports", json=body, headers=other)
        assert r.status_code == 403 and r.json()["error"]["code"] == "report_scope", r.text
        # Each allowed role can ask; the PN-scoped officer's job is visible to it.
        scoped = _bearer(rt, Role.COMPLIANCE_OFFICER, numbers=[PN])
        made = {}
        for name, headers in (("auditor", auditor), ("admin", _bearer(rt, Role.ADMIN)),
                              ("scoped", scoped)):
            r = c.post("/v1/reports", json=body, headers=headers)
            assert r.status_code == 202, r.text
            made[name] = r.json()["id"]
        rid = made["scoped"]
        deadline = time.monotonic() + 300
        while True:
            job = c.get(f"/v1/reports/{rid}", headers=scoped).json()
            if job["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert job["state"] == "succeeded", job
        assert job["result"]["regulation"] == "gdpr" and job["percent"] == 100.0
        pdf = c.get(f"/v1/reports/{rid}/pdf", headers=scoped)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        assert pdf.headers["content-type"] == "application/pdf"
        # The other number's token sees none of it: 404 like a missing report.
        assert c.get(f"/v1/reports/{rid}", headers=other).status_code == 404
        assert c.get(f"/v1/reports/{rid}/pdf", headers=other).status_code == 404
        assert c.get("/v1/reports", headers=other).json()["reports"] == []
        assert c.get("/v1/reports/nope", headers=auditor).status_code == 404
        listed = {j["id"] for j in c.get("/v1/reports", headers=auditor).json()["reports"]}
        assert set(made.values()) <= listed
        # Everything was audited.
        rt.audit.flush()
        events = [e["event"] for e in rt.audit.events()]
        for name in ("report:created", "report:listed", "report:viewed", "report:downloaded"):
            assert name in events, name
