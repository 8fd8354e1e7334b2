"""An export job's visibility is fixed when it is submitted (its ``numbers``: the case's
numbers then). A case widened afterwards (an unscoped admin adds a number) must not
widen what the job writes: a token scoped to the old numbers can read and download the
job, so another number's records would leak to it. Embedded default and real MinIO + ES
(the code path is the same; the scope walk differs per index)."""

from __future__ import annotations

import io
import zipfile

from archiver.auth import Role
from tests.integration.cases.seed import N1, N2, Archive


def test_a_case_widened_after_the_export_was_requested_does_not_leak_into_it(
    archive: Archive,
) -> None:
    a = archive
    a.seed()
    admin = a.token(Role.ADMIN)
    r = a.client.post("/v1/cases", headers=admin, json={
        "name": "Narrow", "matter_number": "M-1",
        "scope": {"query": "merger", "numbers": [N1.pnid]}})  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = a.client.post(f"/v1/cases/{cid}/exports", headers=admin, json={"formats": ["text"]})
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    # Before the job runs, the case gains number N2.
    r = a.client.patch(f"/v1/cases/{cid}", headers=admin,
                       json={"scope": {"query": "merger", "numbers": [N1.pnid, N2.pnid]}})
    assert r.status_code == 200, r.text
    a.rt.export_jobs().run_until_idle(timeout=300)
    scoped = a.token(Role.LEGAL, [N1.pnid])
    view = a.client.get(f"/v1/exports/{export_id}", headers=scoped)
    assert view.status_code == 200, view.text  # the job is of N1: N1's token sees it
    r = a.client.get(f"/v1/exports/{export_id}/download", headers=scoped)
    if r.status_code == 200:  # whatever it wrote must be N1's only
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            texts = [zf.read(n) for n in zf.namelist() if n.startswith("text/")]
        assert texts, "the package holds no text at all"
        assert not [t for t in texts if b"other number" in t], "N2's record leaked"
    else:  # or the job refused the widened case, naming why
        assert r.status_code == 404, r.text
        job = view.json()
        assert job["state"] == "failed", job
        assert "export_scope_changed" in str(job["errors"]) + str(job.get("error")), job
