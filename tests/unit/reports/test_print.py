"""The HTML prints as a paged A4 PDF through weasyprint: every page carries the twin's
SHA-256 and the checkpoint, and every font is embedded (PDF/A needs it). Reads the PDF
back with poppler's pdftotext / pdffonts (installed by .ci/run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import weasyprint

from reports.compute import compute_report
from reports.facts import Regulation
from reports.render import render_html
from reports.twin import twin_bytes, twin_sha256
from tests.unit.reports import factory as F


@pytest.mark.parametrize("regulation", list(Regulation))
def test_every_page_shows_twin_hash_and_checkpoint(regulation: Regulation,
                                                   tmp_path: Path) -> None:
    report = compute_report(F.violating_facts(regulation))
    sha = twin_sha256(twin_bytes(report))
    pdf = tmp_path / "report.pdf"
    weasyprint.HTML(string=render_html(report, sha)).write_pdf(pdf)

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout
    pages = [p for p in text.split("\f") if p.strip()]
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert f"Twin SHA-256 {sha}" in page, number
        assert f"Checkpoint root {F.ROOT}" in page, number
        assert "Checkpoint tree size 1000" in page, number
        assert f"Page {number} of {len(pages)}" in page, number

    fonts = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True,
                           text=True).stdout.splitlines()[2:]
    assert fonts, "no fonts listed"
    for line in fonts:
        assert "DejaVu" in line, line
        assert line.split()[-5] == "yes", f"font not embedded: {line}"  # the "emb" column
