"""A process killed during an export leaves its scratch files (the plan, with every
message's text for the transcripts, and the partial package, decrypted) on disk. They
were in the system temp folder, which nothing ever cleaned: the plaintext outlived the
export, every restart and any later erasure. Now they live under the spool root and the
next runner deletes a dead process's folder. The spool is local disk on either backend
(the same code), so the embedded default is enough here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from archiver.auth import Role
from tests.integration.cases.seed import ALICE, N1, Archive
from tests.support.apps import embedded_settings, running_app

SECRET_TEXT = b"merger plans alpha"  # a seeded message inside the case's scope

CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from archiver.auth import Role
    from archiver.export import writer
    from tests.integration.cases.seed import N1, Archive
    from tests.support.apps import embedded_settings, running_app

    def die(*_a, **_k):  # killed after the records, while writing transcripts
        os._exit(9)

    writer.PackageWriter.add_transcript = die
    settings = embedded_settings(Path(sys.argv[1]), inline_workers=False,
                                 jobs_heartbeat_ttl_s=0.5)
    with running_app(settings) as (client, rt):
        a = Archive(client, rt)
        a.seed()
        legal = a.token(Role.LEGAL)
        r = client.post("/v1/cases", headers=legal, json={
            "name": "Crash", "matter_number": "M-1",
            "scope": {"query": "merger", "numbers": [N1.pnid]}})
        assert r.status_code == 201, r.text
        r = client.post(f"/v1/cases/{r.json()['id']}/exports", headers=legal, json={})
        assert r.status_code == 202, r.text
        print(r.json()["id"], flush=True)
        rt.export_jobs().run_until_idle(timeout=300)
    os._exit(3)  # never reached: the export dies first
""")


def _holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _killed_export(tmp_path: Path) -> tuple[Path, Path, str, list[Path]]:
    """(data dir, temp dir, export id, files holding plaintext) after a child process
    was killed mid-export."""
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.getcwd()}
    child = subprocess.run([sys.executable, "-c", CHILD, str(data)], env=env,
                           capture_output=True, timeout=300, check=False)  # fmt: skip
    assert child.returncode == 9, child.stderr.decode()[-3000:]
    export_id = child.stdout.decode().split()[0]
    spool = data / "spool"
    leftovers = _holding(tmp, SECRET_TEXT) + (_holding(spool, SECRET_TEXT)
                                              if spool.exists() else [])  # fmt: skip
    assert leftovers, "the killed export left no scratch file: the test proves nothing"
    return data, tmp, export_id, leftovers


def test_a_killed_exports_scratch_files_are_swept_at_the_next_start(tmp_path: Path) -> None:
    data, tmp, export_id, leftovers = _killed_export(tmp_path)
    spool = data / "spool"
    # The dead runner's heartbeat must be older than the TTL before another takes the job
    # over; a fast restart would otherwise find it "running" elsewhere and stay idle.
    time.sleep(1.0)

    settings = embedded_settings(data, inline_workers=False, jobs_heartbeat_ttl_s=0.5)
    with running_app(settings) as (client, rt):
        # The next runner (taking the job over) sweeps the dead process's scratch files.
        rt.export_jobs().run_until_idle(timeout=300)
        view = client.get(f"/v1/exports/{export_id}",
                          headers=Archive(client, rt).token(Role.ADMIN))  # fmt: skip
        assert view.json()["state"] == "succeeded", view.text
        left = [p for p in leftovers if p.exists()]
        assert not left, f"a killed export's plaintext is still on disk: {left}"
        assert not _holding(tmp, SECRET_TEXT)
        assert not _holding(spool, SECRET_TEXT)  # the resumed attempt cleaned up too
        assert oct(spool.stat().st_mode & 0o777) == "0o700"


def test_an_erasure_sweeps_a_killed_exports_scratch_files(tmp_path: Path) -> None:
    """No job runner started since the crash (``inline_workers`` off): the erasure of the
    contact whose text the scratch files hold deletes them."""
    data, _tmp, _export_id, leftovers = _killed_export(tmp_path)
    settings = embedded_settings(data, inline_workers=False, jobs_heartbeat_ttl_s=0.5)
    with running_app(settings) as (_client, rt):
        assert [p for p in leftovers if p.exists()] == leftovers  # nothing swept yet
        rt.retention.erasure.erase(N1.pnid, ALICE, by="dpo")
        left = [p for p in leftovers if p.exists()]
        assert not left, f"the erased contact's text is still on disk: {left}"
