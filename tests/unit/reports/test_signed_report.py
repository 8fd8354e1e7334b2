"""End to end without a server: seeded facts → numbers → twin → HTML → PDF/A-3b → PAdES
B-B → offline verification. The twin read back from the signed PDF is the twin computed
from the facts, and the pages print its hash and checkpoint where verify reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO

import pytest
from pypdf import PdfReader

from reports.compute import compute_report
from reports.facts import Regulation
from reports.labels import find_printed
from reports.pdf import render_pdf
from reports.render import render_html
from reports.signing import generate_dev_signing_pair, sign_report
from reports.twin import load_twin, twin_bytes, twin_sha256
from reports.verify import verify_report
from tests.unit.reports import factory as F


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return generate_dev_signing_pair("Archive Report Signer", key_type="p256")


@pytest.mark.parametrize("regulation", list(Regulation))
def test_signed_report_round_trip(regulation: Regulation, pair: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = pair
    report = compute_report(F.violating_facts(regulation))
    twin = twin_bytes(report)
    sha = twin_sha256(twin)
    html = render_html(report, sha, generated_at=datetime(2026, 12, 6, 8, tzinfo=UTC),
                       report_id="rep_e2e")
    pdf = render_pdf(html, twin, title=f"{regulation.value} audit report 2026-11")
    signed = sign_report(pdf, key_pem=key_pem, cert_pem=cert_pem)

    result = verify_report(signed, cert_pem=cert_pem)
    assert result.ok, result.failures
    assert result.twin == twin
    assert result.twin_sha256 == sha
    assert (result.checkpoint_size, result.checkpoint_root) == (1000, F.ROOT)
    assert result.checkpoint_note == F.NOTE
    parsed = load_twin(result.twin)
    assert [f["code"] for f in parsed["findings"]] == [f.code.value for f in report.findings]

    # Every page prints the twin's hash and the checkpoint, and nothing contradicts them.
    pages = [p.extract_text() for p in PdfReader(BytesIO(signed)).pages]
    assert len(pages) >= 3
    for text in pages:
        hashes, sizes, roots = find_printed(text)
        assert hashes == {sha}
        assert sizes == {1000}
        assert roots == {F.ROOT}
    # A finding's record id printed on the pages, as in the twin.
    everything = " ".join(" ".join(p.split()) for p in pages)
    assert F.SHORT_LOCK_RECORD in everything.replace(" ", "")

    # One edited byte inside the signed range: verification fails.
    i = signed.index(b"/Type /Page") if b"/Type /Page" in signed else len(signed) // 3
    tampered = signed[:i] + bytes([signed[i] ^ 1]) + signed[i + 1:]
    assert not verify_report(tampered, cert_pem=cert_pem).ok
