"""The report job end to end on the embedded default and on real MinIO + Elasticsearch:
a seeded archive with known violations gives a report listing exactly those; the PDF is
signed (pdfsig's words), stored under lock and logged; the twin is reproducible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.note import Signer
from archiver.reporting.offline import verify_file
from reports.verify import verify_report
from tests.integration.reporting.support import EXPECTED_CODES, SILENT, seeded_archive

pytestmark = pytest.mark.integration
BACKENDS = ["embedded", "servers"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install poppler-utils)")
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_violations_are_exactly_the_findings(request: Any, tmp_path: Path,
                                                     backend: str) -> None:
    with seeded_archive(request, tmp_path, backend) as s:
        result = s.run_report(sample_size=None)
        rt = s.runtime
        twin = json.loads(rt.objects.get(result["twin"]["key"], result["twin"]["version_id"]))
        codes = {f["code"] for f in twin["findings"]}
        assert codes == EXPECTED_CODES, twin["findings"]
        by_code = {f["code"]: f for f in twin["findings"]}
        assert by_code["retention.lock_shorter_than_policy"]["record_ids"] == [
            s.short_lock_record]
        assert by_code["completeness.silent_number"]["refs"] == [SILENT]
        assert by_code["erasure.refused"]["count"] == 1
        assert by_code["consent.marketing_after_opt_out"]["count"] == 1
        assert by_code["completeness.media_not_fetched"]["count"] == 1
        assert twin["retention"]["check_mode"] == "full"
        assert twin["retention"]["read"] == twin["retention"]["population"] >= 6
        # Names never appear: not the customers' numbers, not their profile name.
        raw = json.dumps(twin)
        for secret in ("447700900101", "447700900102", "447700900103", "Person"):
            assert secret not in raw
        # Signed PDF, stored under lock, logged as a report leaf.
        pdf = rt.objects.get(result["pdf"]["key"], result["pdf"]["version_id"])
        info = rt.objects.stat(result["pdf"]["key"], result["pdf"]["version_id"])
        assert info.retention is not None
        checked = verify_report(pdf)
        assert checked.ok, [c for c in checked.checks if not c.ok]
        assert checked.twin is not None and json.loads(checked.twin) == twin
        leaves = [parse_entry(rt.log.entry(i)) for i in result["leaves"]]
        assert {e.kind for e in leaves} == {EntryKind.REPORT}
        assert {e.fields["part"] for e in leaves} == {"pdf", "twin"}
        assert all(e.fields["twin_sha256"] == result["twin_sha256"] for e in leaves)
        assert result["tree_size"] == twin["checkpoint"]["size"]
        # pdfsig judges the signature; pdftoppm renders the pages for a person to read.
        path = tmp_path / "report.pdf"
        path.write_bytes(pdf)
        out = subprocess.run([_tool("pdfsig"), str(path)], capture_output=True, text=True,
                             check=False).stdout
        assert "Signature is Valid" in out and "Total document signed" in out, out
        art = Path(os.environ.get("REPORT_ARTIFACTS_DIR") or tmp_path / "png")
        art.mkdir(parents=True, exist_ok=True)
        subprocess.run([_tool("pdftoppm"), "-png", "-r", "60", str(path),
                        str(art / f"seeded-{backend}")], check=True)
        assert list(art.glob(f"seeded-{backend}*.png"))
        # Offline: the checkpoint note verifies under the log's key, and only that key.
        log_key = rt.checkpoints.signer.verifier.key_text
        key_file = tmp_path / "log.pub"
        key_file.write_text(log_key + "\n")
        cert = rt.reports.signing.cert_pem  # the archive's report-signing certificate
        good = verify_file(pdf, public_key=str(key_file), cert_pem=cert)
        assert good.ok, good.summary
        assert any(c.name == "checkpoint_signed" and c.ok and "tree size" in c.detail
                   for c in good.checks)
        stranger = Signer.generate(rt.settings.log_origin).verifier.key_text
        bad_key = verify_file(pdf, public_key=stranger, cert_pem=cert)
        assert not bad_key.ok and "checkpoint_signed" in bad_key.summary
        # One byte edited: the offline check fails and pdfsig no longer says both phrases.
        edited = bytearray(pdf)
        edited[len(edited) // 3] ^= 0x01
        broken = verify_file(bytes(edited), public_key=log_key, cert_pem=cert)
        assert not broken.ok and broken.summary.startswith("FAILED")
        path.write_bytes(bytes(edited))
        out = subprocess.run([_tool("pdfsig"), str(path)], capture_output=True, text=True,
                             check=False).stdout
        assert not ("Signature is Valid" in out and "Total document signed" in out), out


@pytest.mark.parametrize("backend", BACKENDS)
def test_pinned_tree_size_and_seeded_sample_give_identical_twins(
        request: Any, tmp_path: Path, backend: str) -> None:
    with seeded_archive(request, tmp_path, backend) as s:
        first = s.run_report(sample_size=3, seed="fixed-seed")
        size = first["tree_size"]
        again = s.run_report(sample_size=3, seed="fixed-seed", tree_size=size)
        rt = s.runtime
        a = rt.objects.get(first["twin"]["key"], first["twin"]["version_id"])
        b = rt.objects.get(again["twin"]["key"], again["twin"]["version_id"])
        assert first["report_id"] != again["report_id"]
        assert a == b
        twin = json.loads(a)
        assert twin["retention"]["check_mode"] == "sample" and twin["retention"]["read"] == 3
        # The second report covers the first: the log grew, yet its pinned size is the same.
        assert rt.log.size() > size
        # A different seed draws a different sample (the seed is in the twin).
        other = s.run_report(sample_size=3, seed="other-seed", tree_size=size)
        c = rt.objects.get(other["twin"]["key"], other["twin"]["version_id"])
        assert json.loads(c)["retention"]["seed"] == "other-seed" and c != a
        # An unpinned report covers the latest tree and proves it consistent with the
        # checkpoint the earlier reports of this regulation logged.
        latest = s.run_report(sample_size=3)
        lt = json.loads(rt.objects.get(latest["twin"]["key"], latest["twin"]["version_id"]))
        assert latest["tree_size"] > size
        assert lt["integrity"]["previous_size"] == size
        assert lt["integrity"]["consistency"] == "verified"
        assert "integrity.consistency_failed" not in {f["code"] for f in lt["findings"]}

