"""``verify-report`` is what a stranger runs on a report handed to them. Anyone can make a
key pair, sign a PDF of made-up figures and copy a genuine checkpoint note into its twin:
only the pinned report-signing certificate tells the archive's report from that one, so
without ``--cert`` nothing verifies. And a good report verifies without pyHanko's logged
tracebacks on stderr (they read like a crash)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.reporting.offline import verify_file
from reports.compute import compute_report
from reports.facts import Regulation
from reports.pdf import render_pdf
from reports.render import render_html
from reports.signing import generate_dev_signing_pair, sign_report
from reports.twin import twin_bytes, twin_sha256
from tests.unit.reports import factory as F

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A report signed by a stranger's self-signed pair named like the archive's."""
    key, cert = generate_dev_signing_pair("wa-archiver.local/log report signing (dev)")
    report = compute_report(F.clean_facts(Regulation.GDPR))
    twin = twin_bytes(report)
    html = render_html(report, twin_sha256(twin), generated_at=datetime(2026, 12, 6, tzinfo=UTC),
                       report_id="rep_forged")
    pdf = sign_report(render_pdf(html, twin, title="GDPR audit report"), key_pem=key,
                      cert_pem=cert)
    path = tmp_path_factory.mktemp("forged") / "report.pdf"
    path.write_bytes(pdf)
    _, archive_cert = generate_dev_signing_pair("wa-archiver.local/log report signing (dev)")
    return path, cert, archive_cert


def test_no_pinned_certificate_never_verifies(forged: tuple[Path, bytes, bytes]) -> None:
    path, _stranger, _archive = forged
    result = verify_file(path.read_bytes())
    assert not result.ok
    assert "signer_pinned" in result.summary and result.summary.startswith("FAILED")


def test_only_the_pinned_signer_verifies(forged: tuple[Path, bytes, bytes]) -> None:
    path, stranger, archive = forged
    assert not verify_file(path.read_bytes(), cert_pem=archive).ok
    assert verify_file(path.read_bytes(), cert_pem=stranger).ok  # the file itself is sound


def test_cli_exit_codes_and_no_tracebacks(forged: tuple[Path, bytes, bytes],
                                          tmp_path: Path) -> None:
    path, stranger, archive = forged
    pins = {}
    for name, pem in (("stranger", stranger), ("archive", archive)):
        pins[name] = tmp_path / f"{name}.pem"
        pins[name].write_bytes(pem)
    runner = CliRunner()
    unpinned = runner.invoke(app, ["verify-report", str(path)])
    assert unpinned.exit_code == 1 and "signer_pinned" in unpinned.output, unpinned.output
    wrong = runner.invoke(app, ["verify-report", str(path), "--cert", str(pins["archive"])])
    assert wrong.exit_code == 1, wrong.output
    # As a person runs it: a real process, its own stderr (no pytest log capture).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["PYTHONPATH"] = str(REPO)
    right = subprocess.run([sys.executable, "-m", "archiver.cli", "verify-report", str(path),
                            "--cert", str(pins["stranger"])], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False, timeout=120)
    assert right.returncode == 0, right.stdout + right.stderr
    assert "Traceback" not in right.stderr and "Validation error" not in right.stderr, (
        right.stderr)
