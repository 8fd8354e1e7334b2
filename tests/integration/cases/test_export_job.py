"""The export job end to end (issue 11), on the embedded default and on real MinIO +
Elasticsearch: a case over a seeded archive (messages, echoes, history sync, edits,
revokes, reactions, statuses; media through FakeMeta) becomes a package holding every
record of the scope and nothing else, which ``verify-export`` accepts (and refuses after
one byte changes); an erased subject's records are tombstones in every format."""

from __future__ import annotations

import base64
import email
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.audit import Actor
from archiver.auth import Role
from archiver.errors import NotFound
from archiver.export import gather as gather_mod
from archiver.export.job import KIND, ExportOptions, case_params
from archiver.export.verify import verify_package
from archiver.jobs.durable import JobService
from archiver.jobs.model import JobOwner, JobState
from archiver.runtime import open_state_store
from tests.fakes.meta import FakeMeta
from tests.integration.cases.seed import ALICE, BOB, DATE_FROM, DATE_TO, N1, N2, Archive, Seeded
from tests.integration.cases.seed import T0 as T0_SEED
from tests.support.apps import backend_settings, running_app, settings_env
from tests.support.disposition_media import (
    JPEG,
    PNID,
    TOKEN,
    archive_with,
    base_overrides,
    deliver_image,
    media_worker,
    write_policy,
)
from tests.support.disposition_media import longer_default as policy
from tests.support.retention import token
from tests.unit.ledger.test_gocheck import gocheck_bin

__all__ = ["gocheck_bin"]

REPO = Path(__file__).resolve().parents[3]
LEGAL = Actor(token_id="t-legal", name="legal@acme.example", role="legal")


def jobs_for(a: Archive) -> JobService:
    service = JobService.from_settings(a.rt.settings, a.rt.state)
    a.rt.register_export(service)
    return service


def run_export(a: Archive, case_id: str, options: ExportOptions, tmp: Path,
               actor: Actor = LEGAL) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    service = jobs_for(a)
    owner = JobOwner(str(actor.token_id), actor.role, actor.numbers)
    job = service.submit(KIND, case_params(case_id, actor, options), owner)
    service.run_until_idle(timeout=300)
    job = service.get(KIND, job.id)
    assert job.state is JobState.SUCCEEDED, (job.state, job.errors)
    _, chunks = service.open_artifact(job, "export.zip")
    out = tmp / f"{job.id}.zip"
    with out.open("wb") as f:
        for c in chunks:
            f.write(c)
    return out, dict(job.result or {})


def create_case(a: Archive, **scope: Any) -> str:
    body = {
        "name": "Acme v. Example", "matter_number": "2026-CV-0042",
        "custodians": {"numbers": [N1.pnid], "contacts": scope.pop("contacts", [ALICE])},
        "scope": {"query": "merger", "date_from": DATE_FROM, "date_to": DATE_TO,
                  "numbers": [N1.pnid], **scope},
    }  # fmt: skip
    r = a.client.post("/v1/cases", headers=a.token(Role.LEGAL), json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def every_text(package: Path) -> str:
    """Every file of the package decompressed, RSMF slices' inner rsmf.zip opened too:
    what a reader of the package can see."""
    parts: list[str] = []
    with zipfile.ZipFile(package) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            parts.append(data.decode("utf-8", "replace"))
            if name.endswith(".rsmf"):
                msg = email.message_from_bytes(data)
                for part in msg.walk():
                    if part.get_filename() == "rsmf.zip":
                        inner = zipfile.ZipFile(io.BytesIO(part.get_payload(decode=True)))
                        parts += [inner.read(n).decode("utf-8", "replace")
                                  for n in inner.namelist()]  # fmt: skip
    return "\n".join(parts)


def names_bob(text: str) -> bool:
    """"Bob" as a word: sealed content is base64, and three letters turn up in it by chance
    (a plain substring test failed about one run in five on ciphertext like "...ZeBoba8P...")."""
    return re.search(r"(?<![A-Za-z0-9+/=])Bob(?![A-Za-z0-9+/=])", text) is not None


def manifest(package: Path) -> dict[str, Any]:
    with zipfile.ZipFile(package) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def verify_cli(package: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archiver.cli", "verify-export", str(package),
                           "--public-key", key], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_case_export_holds_exactly_the_scope_and_verifies(
    archive: Archive, tmp_path: Path
) -> None:
    a = archive
    seeded: Seeded = a.seed()
    assert len(seeded.in_scope) == 7, seeded.in_scope
    case_id = create_case(a)
    options = ExportOptions(bates_prefix="ACME", time_zone="Europe/Paris")
    package, _ = run_export(a, case_id, options, tmp_path)
    m = manifest(package)
    got = {r["record_id"] for r in m["records"]}
    assert got == set(seeded.in_scope.values())
    assert not got & set(seeded.out_of_scope.values())
    kinds = {r["kind"] for r in m["records"]}
    assert {"message", "echo", "history_message", "status"} <= kinds, kinds
    # Folds land on the message event: the edit, the revoke, the reaction, the receipt.
    text = every_text(package)
    assert "merger plans beta" in text and '"deleted": true' in text
    assert "read_receipts" in text and "\U0001f44d" in text
    assert "lunch tomorrow" not in text and "merger from bob" not in text
    assert "business_app" in text and "history_sync" in text
    # Transcripts: one per conversation, Bates after every record's.
    assert any(n.startswith("transcripts/") for n in (f["path"] for f in m["files"]))
    # Verify offline, with the pinned key: all hold; one byte changed: named, exit 1.
    key = a.rt.proofs.public_key()
    result = verify_package(package, key)
    assert result.ok, result.summary()
    done = verify_cli(package, key)
    assert done.returncode == 0, done.stdout + done.stderr
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.startswith("text/") and "tampered" not in str(dst.comment):
                data = data[:-1] + bytes([data[-1] ^ 1])
                dst.comment = b"tampered " + info.filename.encode()
            dst.writestr(info, data)
    bad = verify_cli(tampered, key)
    assert bad.returncode == 1
    with zipfile.ZipFile(tampered) as z:
        name = z.comment.decode().split(" ", 1)[1]
    assert name in bad.stdout + bad.stderr
    # A forger who also updates the file's SHA-256 and size in the manifest is caught
    # too: the logged export leaf names the file list (files_sha256), not only records.
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(forged, "w") as dst:
        fm = json.loads(src.read("manifest.json"))
        for f in fm["files"]:
            data = src.read(f["path"])
            if f["path"].startswith("rsmf/"):
                data += b"\r\nforged"
                f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)
            dst.writestr(f["path"], data)
        dst.writestr("manifest.json", json.dumps(fm))
    refused = verify_package(forged, key)
    assert "export: the logged export names another file list" in map(str, refused.failures)
    # The export itself is logged and in the case's chain of custody.
    custody = a.rt.cases.custody(case_id, LEGAL)
    actions = [e["action"] for e in custody]
    assert actions[-2:] == ["export_requested", "export_finished"]
    assert custody[-1]["counts"]["records"] == len(got)
    assert custody[-1]["details"]["state"] == "done"


def test_the_export_reads_no_index_document_a_second_time(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scope walk hands each record's document to the plan: no index GET per record
    (it was one per record, 21% of an export's time at 10,000 records)."""
    a = archive
    seeded: Seeded = a.seed()
    case_id = create_case(a)
    calls: list[str] = []
    real = a.rt.index.get

    def counting(doc_id: str) -> dict[str, Any] | None:
        calls.append(doc_id)
        return real(doc_id)

    monkeypatch.setattr(a.rt.index, "get", counting)
    package, _ = run_export(a, case_id, ExportOptions(transcripts=False), tmp_path)
    got = {r["record_id"] for r in manifest(package)["records"]}
    assert got == set(seeded.in_scope.values())
    assert not set(calls) & got, calls
    assert verify_package(package, a.rt.proofs.public_key()).ok


def test_go_verifies_the_real_package(archive: Archive, tmp_path: Path,
                                      gocheck_bin: Path) -> None:
    """Go's reference code (note + tlog), given only the real package's manifest and the
    pinned key, verifies its checkpoint, a sample of its proofs and the export leaf; a
    changed entry fails. Given the whole package it also checks every file and the
    leaf's four digests: a forged head with its file hash updated fails."""
    a = archive
    a.seed()
    package, _ = run_export(a, create_case(a), ExportOptions(include_raw=True,
                                                             transcripts=False), tmp_path)
    m = manifest(package)
    assert [s for b in m["raw_batches"] for s in b["slots"]]  # raw slots for Go to check
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    key = a.rt.proofs.public_key()
    go = [str(gocheck_bin), "manifest", str(path), key]
    ok = subprocess.run([*go, "2"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    n = len(m["records"])
    assert f"{(n + 1) // 2} of {n} record proofs" in ok.stdout, ok.stdout
    entry = bytearray(base64.b64decode(m["records"][0]["entry"]))
    entry[-3] ^= 1
    m["records"][0]["entry"] = base64.b64encode(bytes(entry)).decode()
    path.write_text(json.dumps(m))
    bad = subprocess.run(go, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "FAIL" in bad.stderr
    # The whole real package: every file, every record's bytes against its entry, the raw
    # batches and the four digests the export leaf names, recomputed in Go.
    whole = [str(gocheck_bin), "package", str(package), key]
    ok = subprocess.run([*whole, "2"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"{n} records ({(n + 1) // 2} of {n} inclusion proofs)" in ok.stdout, ok.stdout
    assert "binds records, files, raw batches and head, consistent" in ok.stdout
    # A forger who changes the exporter in the head and in the custody file, and updates
    # that file's hash: every file hash holds, the leaf's digests do not.
    forged = tmp_path / "forged-head.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(forged, "w") as dst:
        fm = json.loads(src.read("manifest.json"))
        fm["exported_by"] = "someone-else"
        for f in fm["files"]:
            data = src.read(f["path"])
            if f["path"] == "chain-of-custody.json":
                doc = json.loads(data)
                doc["exported_by"] = "someone-else"
                data = json.dumps(doc).encode()
                f["sha256"], f["size"] = hashlib.sha256(data).hexdigest(), len(data)
            dst.writestr(f["path"], data)
        dst.writestr("manifest.json", json.dumps(fm))
    bad = subprocess.run([*whole[:2], str(forged), key], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert bad.returncode == 1, bad.stdout
    assert "FAIL export: the logged export names another manifest head" in bad.stderr
    assert "FAIL export: the logged export names another file list" in bad.stderr


def test_bates_numbers_are_stable_and_contiguous_across_exports(
    archive: Archive, tmp_path: Path
) -> None:
    a = archive
    a.seed()
    case_id = create_case(a)
    first, _ = run_export(a, case_id, ExportOptions(bates_prefix="X", bates_start=100,
                                                    transcripts=False), tmp_path)
    second, _ = run_export(a, case_id, ExportOptions(bates_prefix="X", bates_start=5,
                                                     transcripts=False), tmp_path)
    one = {r["record_id"]: r["bates"] for r in manifest(first)["records"]}
    two = {r["record_id"]: r["bates"] for r in manifest(second)["records"]}
    assert one == two
    assert sorted(one.values())[0] == "X00000100"


def test_erased_subject_is_a_tombstone_in_every_format(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subject is erased while the export runs (after its records were listed): the
    package names the erasure for each of them and nothing of their content."""
    a = archive
    seeded = a.seed()
    case_id = create_case(a, query="", contacts=[])
    original = gather_mod.Gatherer.plan
    erased: list[dict[str, Any]] = []

    def plan_then_erase(self: gather_mod.Gatherer, *args: Any, **kw: Any) -> gather_mod.Plan:
        plan = original(self, *args, **kw)
        erased.append(a.rt.retention.erasure.erase(N1.pnid, BOB, by="dpo"))
        return plan

    monkeypatch.setattr(gather_mod.Gatherer, "plan", plan_then_erase)
    package, _ = run_export(a, case_id, ExportOptions(), tmp_path)
    m = manifest(package)
    tomb = [r for r in m["records"] if r["erased"]]
    assert tomb, "Bob's message must be in the scope and erased"
    assert {r["erased"]["request_id"] for r in tomb} == {erased[0]["erasure_id"]}
    text = every_text(package)
    assert "merger from bob" not in text and not names_bob(text) and BOB not in text
    assert erased[0]["erasure_id"] in text  # named in text/, RSMF, load file, manifest
    assert "merger plans alpha" in text  # Alice's content stays
    assert verify_package(package, a.rt.proofs.public_key()).ok
    assert seeded  # the archive was seeded


def test_a_shred_landing_between_key_read_and_decryption_leaves_a_tombstone(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic race: the export has read (and cached) Bob's data key; an erasure
    that began a minute ago (before the export: no time cutoff catches it) destroys the
    key right then; only afterwards is Bob's record decrypted. The key's destruction has
    begun before the plaintext reached the package, so the package must hold a tombstone."""
    a = archive
    seeded = a.seed()
    (bob_id,) = [v for k, v in seeded.out_of_scope.items() if "merger from bob" in k]
    case_id = create_case(a, query="", contacts=[])
    erasure = a.rt.retention.erasure
    monkeypatch.setattr(erasure, "clock", lambda: datetime.now(UTC) - timedelta(minutes=1))
    original = gather_mod.Gatherer._item
    erased: list[dict[str, Any]] = []

    def read_key_erase_then_open(self: gather_mod.Gatherer, row: gather_mod.Row,
                                 record: Any, *args: Any) -> gather_mod.Gathered:  # fmt: skip
        if row.record_id == bob_id and not erased:
            assert self._key(record.key_id) is not None  # read and cached: still live
            erased.append(erasure.erase(N1.pnid, BOB, by="dpo"))
        return original(self, row, record, *args)

    monkeypatch.setattr(gather_mod.Gatherer, "_item", read_key_erase_then_open)
    package, _ = run_export(a, case_id, ExportOptions(), tmp_path)
    assert erased, "the hook must have run on Bob's record"
    text = every_text(package)
    assert "merger from bob" not in text and not names_bob(text) and BOB not in text
    tomb = [r for r in manifest(package)["records"] if r["erased"]]
    assert {r["record_id"] for r in tomb} >= {bob_id}
    assert {r["erased"]["request_id"] for r in tomb} == {erased[0]["erasure_id"]}
    assert "merger plans alpha" in text  # Alice's content stays
    assert verify_package(package, a.rt.proofs.public_key()).ok


def test_erasing_a_subject_deletes_the_packages_holding_its_content(
    archive: Archive, tmp_path: Path
) -> None:
    a = archive
    a.seed()
    service = a.rt.export_jobs()  # the runtime's one job service: erasure goes through it
    job = service.submit(KIND, case_params(create_case(a), LEGAL, ExportOptions(
        transcripts=False)), JobOwner("t-legal", "legal", None))  # fmt: skip
    service.run_until_idle(timeout=300)
    job = service.get(KIND, job.id)
    assert job.state is JobState.SUCCEEDED, job.errors
    (ref,) = [r for r in job.result["artifacts"] if r["key"].endswith("export.zip")]
    stored = service.workarea.stat(ref["key"])
    assert stored is not None and stored.subjects  # pseudonyms whose content it holds
    service.open_artifact(job, "export.zip")  # downloadable now
    done = a.rt.retention.erasure.erase(N1.pnid, ALICE, by="dpo")
    assert done["subject"] in stored.subjects
    after = service.get(KIND, job.id)
    (gone,) = [r for r in after.result["artifacts"] if r["key"] == ref["key"]]
    assert gone["status"] == "erased"
    assert service.workarea.stat(ref["key"]) is None
    with pytest.raises(NotFound):
        service.open_artifact(after, "export.zip")


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    with FakeMeta(token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("backend", ["embedded", pytest.param("minio",
                                                              marks=pytest.mark.integration)])
def test_media_are_exported_in_their_original_bytes(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path, fake: FakeMeta,
) -> None:
    base = base_overrides(request, backend)
    wa = "16505550077"
    with httpx.Client(timeout=10) as http, archive_with(
        tmp_path, base, write_policy(tmp_path, policy(30))
    ) as (client, rt):
        worker = media_worker(rt, fake, http)
        ts = int(time.time()) - 60
        image = deliver_image(client, rt, worker, fake, shared, wa_id=wa, ts=ts)
        deliver_image(client, rt, worker, fake, shared, wa_id="16505550099", ts=ts)
        r = client.post("/v1/cases", headers=token(rt, Role.LEGAL), json={
            "name": "images", "matter_number": "m-1",
            "custodians": {"numbers": [PNID], "contacts": [wa]}})  # fmt: skip
        assert r.status_code == 201, r.text
        a = Archive(client, rt)
        package, _ = run_export(a, r.json()["id"], ExportOptions(transcripts=False), tmp_path)
        m = manifest(package)
        ids = {rec["record_id"] for rec in m["records"]}
        assert image.message_id in ids and len(ids) == 2  # the message and its link record
        (msg,) = [rec for rec in m["records"] if rec["record_id"] == image.message_id]
        (att,) = msg["attachments"]
        with zipfile.ZipFile(package) as zf:
            data = zf.read(att["path"])
        assert data.startswith(JPEG) and len(data) == len(JPEG) + 8
        assert verify_package(package, rt.proofs.public_key()).ok


@pytest.mark.parametrize("backend", ["embedded", pytest.param("servers",
                                                              marks=pytest.mark.integration)])
def test_an_export_killed_midway_is_resumed_by_the_next_runner(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """SIGKILL the process writing the package after its third record: the job is not
    left running; the next runner takes it over (attempt 2) and finishes a package that
    verifies, holding every record of the scope once."""
    settings = backend_settings(request, tmp_path, backend, inline_workers=False,
                                jobs_heartbeat_ttl_s=1.0)  # fmt: skip
    with running_app(settings) as (client, runtime):
        a = Archive(client, runtime)
        seeded = a.seed()
        case_id = create_case(a)
        key = runtime.proofs.public_key()
    service = JobService.from_settings(settings, open_state_store(settings, create=True))
    runtime.register_export(service)  # to submit and read; this process runs nothing
    job = service.submit(KIND, case_params(case_id, LEGAL, ExportOptions(transcripts=False)),
                         JobOwner("t-legal", "legal", None))  # fmt: skip
    env = settings_env(settings)
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.export_worker", "slow"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    seen: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            seen.append(line.strip())
            if line.startswith("item 3"):
                proc.kill()  # SIGKILL: no cleanup, no last heartbeat
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -9 and seen[-1] == "item 3", (seen, proc.stderr.read()
                                                            if proc.stderr else "")
    midway = service.get(KIND, job.id)
    assert midway.state is JobState.RUNNING and midway.attempts == 1
    time.sleep(1.5)  # the heartbeat TTL passes: the job is presumed orphaned
    done = subprocess.run([sys.executable, "-m", "tests.support.export_worker"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    job = service.get(KIND, job.id)
    assert job.state is JobState.SUCCEEDED and job.attempts == 2, (job.state, job.errors)
    _, chunks = service.open_artifact(job, "export.zip")
    package = tmp_path / "resumed.zip"
    package.write_bytes(b"".join(chunks))
    assert verify_package(package, key).ok
    ids = [r["record_id"] for r in manifest(package)["records"]]
    assert sorted(ids) == sorted(set(seeded.in_scope.values()))


@pytest.mark.parametrize("backend", ["embedded", pytest.param("servers",
                                                              marks=pytest.mark.integration)])
def test_cli_exports_a_case_and_a_subject(request: pytest.FixtureRequest, tmp_path: Path,
                                          backend: str, gocheck_bin: Path) -> None:  # fmt: skip
    settings = backend_settings(request, tmp_path, backend, inline_workers=False)
    with running_app(settings) as (client, runtime):
        a = Archive(client, runtime)
        seeded = a.seed()
        case_id = create_case(a)
        key = runtime.proofs.public_key()
    env = settings_env(settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "archiver.cli", "export", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)

    out = tmp_path / "case.zip"
    done = cli("--case", case_id, "-o", str(out), "--bates-prefix", "CLI", "--no-transcripts")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["counts"]["records"] == len(seeded.in_scope)
    assert verify_package(out, key).ok
    assert {r["record_id"] for r in manifest(out)["records"]} == set(seeded.in_scope.values())
    sar = tmp_path / "sar.zip"
    done = cli("--subject", ALICE, "-o", str(sar))
    assert done.returncode == 0, done.stderr[-3000:]
    with zipfile.ZipFile(sar) as zf:
        assert "transcripts/subject-access.pdf" in zf.namelist()
        assert "documents/subject-access.json" in zf.namelist()
    # Both packages verify, in Python and in Go on its own (a subject access package
    # binds its transcript and document through files_sha256 like any other file).
    for package in (out, sar):
        assert verify_package(package, key).ok, package
        go = subprocess.run([str(gocheck_bin), "package", str(package), key],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
        assert go.returncode == 0 and go.stdout.startswith("ok: package:"), go.stderr
    # Bad use: neither or both, an unknown case, a bad prefix.
    assert cli("-o", str(out)).returncode == 2
    assert cli("--case", case_id, "--subject", ALICE, "-o", str(out)).returncode == 2
    missing = cli("--case", "case_aaaaaaaaaaaaaaaa", "-o", str(tmp_path / "x.zip"))
    assert missing.returncode == 1 and "case_not_found" in missing.stderr
    bad = cli("--case", case_id, "--bates-prefix", "A/B", "-o", str(tmp_path / "y.zip"))
    assert bad.returncode == 1 and "export_bates_prefix_invalid" in bad.stderr
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "y.zip").exists()


def test_a_delivery_mixing_numbers_is_not_decrypted_into_another_numbers_export(
    archive: Archive, tmp_path: Path
) -> None:
    """Meta may put changes of several business numbers in one delivery. An export of
    number N1's case with raw captures must not decrypt a delivery that also carries an
    N2 message (N2's text and contact would leak); a delivery of N1 alone still is."""
    a = archive
    wamid = f"wamid.mix{time.time_ns()}"
    only_n1 = N1.text(ALICE, wamid + "a", T0_SEED + 7 * 3600, "merger alone on n1", name="Alice")
    mixed = json.loads(N1.text(ALICE, wamid + "b", T0_SEED + 8 * 3600, "merger mixed on n1",
                               name="Alice"))  # fmt: skip
    n2 = json.loads(N2.text("4930111222333", wamid + "c", T0_SEED + 8 * 3600,
                            "merger SECRET-OF-N2", name="Carol"))  # fmt: skip
    mixed["entry"][0]["changes"].append(n2["entry"][0]["changes"][0])
    a.post(only_n1)
    a.post(json.dumps(mixed).encode())
    case_id = create_case(a)
    package, _ = run_export(a, case_id, ExportOptions(include_raw=True, transcripts=False),
                            tmp_path)  # fmt: skip
    text = every_text(package)
    assert "merger mixed on n1" in text  # the N1 message itself is exported ...
    assert "SECRET-OF-N2" not in text and "Carol" not in text  # ... not its N2 neighbour
    m = manifest(package)
    slots = [s for b in m["raw_batches"] for s in b["slots"]]
    assert len(m["raw_batches"]) >= 2 and slots  # N1-only deliveries are still decrypted
    assert verify_package(package, a.rt.proofs.public_key()).ok
