"""``archiver report`` and ``archiver verify-report``: a report written by the CLI verifies offline
(exit 0), fails after one edited byte or under a stranger's log key (exit 1), and
``verify-report`` reads no settings and makes no data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from archiver.cli import app as cli
from archiver.ledger.note import Signer
from tests.integration.reporting.support import PN, seeded_archive
from tests.support.apps import settings_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def _verify(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """In a clean process, in an empty folder, with no ARCHIVER_* setting at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "archiver.cli", "verify-report", *args],
                          cwd=tmp, env=env, capture_output=True, text=True, check=False,
                          timeout=120)


def test_report_then_verify_offline(request: Any, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with seeded_archive(request, tmp_path, "embedded") as s:
        for name, value in settings_env(s.runtime.settings).items():
            if name.startswith("ARCHIVER_"):
                monkeypatch.setenv(name, value)
        out = tmp_path / "finra.pdf"
        res = CliRunner().invoke(cli, [
            "report", "--regulation", "finra", "--from", s.start.isoformat(),
            "--to", s.end.isoformat(), "--number", PN, "--sample", "2", "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(b"%PDF-") and "twin sha256" in res.output
        bad = CliRunner().invoke(cli, [
            "report", "--regulation", "finra", "--from", "2026-02-01", "--to", "2026-01-01",
            "-o", str(tmp_path / "x.pdf")])
        assert bad.exit_code == 2 and "end must be after" in bad.output
        key = s.runtime.checkpoints.signer.verifier.key_text
        cert = tmp_path / "report-signing-cert.pem"
        cert.write_bytes(s.runtime.reports.signing.cert_pem)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    ok = _verify(empty, str(out), "--public-key", key, "--cert", str(cert))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().splitlines()[-1].startswith("OK: signed by")
    assert list(empty.iterdir()) == []  # no archive-data, nothing written
    stranger = Signer.generate("wa-archiver.local/log").verifier.key_text
    wrong = _verify(empty, str(out), "--public-key", stranger, "--cert", str(cert))
    assert wrong.returncode == 1 and "checkpoint_signed" in wrong.stdout
    edited = bytearray(out.read_bytes())
    edited[len(edited) // 2] ^= 0x01
    broken = tmp_path / "edited.pdf"
    broken.write_bytes(bytes(edited))
    failed = _verify(empty, str(broken), "--public-key", key, "--cert", str(cert))
    assert failed.returncode == 1 and "FAILED" in failed.stdout, failed.stdout
    missing = _verify(empty, str(tmp_path / "nope.pdf"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
