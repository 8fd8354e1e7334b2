"""A report PDF end to end: PDF/A-3b with its twin, PAdES-signed, checked by outside tools.

pdfsig (poppler-utils), veraPDF (scripts/verapdf) and pdftoppm are the judges here, not our
own code. They must be installed: a missing tool FAILS these tests (never skips). pdfsig
exits 0 even on a bad signature, so the tests read its words.

Pages are rendered to PNG into ``$REPORT_ARTIFACTS_DIR`` (default: a pytest tmp folder);
CI sets it and keeps the folder as an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from reports.labels import TWIN_FILENAME, checkpoint_line, twin_hash_line
from reports.pdf import render_pdf
from reports.signing import generate_dev_signing_pair, sign_report
from reports.verify import REQUIRED_CHECKS, verify_report
from tests.integration.reports.pki import running_tsa

REPO = Path(__file__).resolve().parents[3]
VERAPDF = REPO / "scripts" / "verapdf"
ROOT = "5f" * 32
TWIN = json.dumps(
    {
        "schema": "wa-archiver.report-twin/1",
        "regulation": "gdpr",
        "checkpoint": {"size": 1234, "root_hash": ROOT},
        "inventory": {"records": 1000, "media": 12},
    },
    sort_keys=True,
    separators=(",", ":"),
).encode()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install poppler-utils); it is required")
    return path


def _html(twin_hash: str, *, size: int = 1234, root: str = ROOT) -> str:
    # Margin boxes fed by string-set, the way reports/templates/report.css prints them on
    # every page, plus the labelled line of reports.labels in the body.
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>t</title>
<style>
@page {{ size: A4; margin: 22mm 16mm 24mm 16mm;
  @top-right {{ content: "Checkpoint tree size " string(cp-size); font: 7.5pt 'DejaVu Sans'; }}
  @bottom-left {{ content: "Twin SHA-256 " string(twin) "\\A Checkpoint root " string(cp-root);
                  white-space: pre; font: 6.5pt 'DejaVu Sans Mono'; }}
  @bottom-right {{ content: "Page " counter(page) " of " counter(pages);
                   font: 7.5pt 'DejaVu Sans'; }} }}
body {{ font-family: 'DejaVu Sans'; font-size: 10pt; }}
.twin-sha {{ string-set: twin content(); }} .cp-size {{ string-set: cp-size content(); }}
.cp-root {{ string-set: cp-root content(); }} .mono {{ font-family: 'DejaVu Sans Mono'; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #999; padding: 2pt 6pt; }}
</style></head><body>
<h1>GDPR audit report</h1>
<p>Period 2026-11-01 .. 2026-11-30 · scope +49 30 000000 (number id 1001)</p>
<p>The twin embedded in this PDF has the SHA-256 <span class="mono twin-sha">{twin_hash}</span>;
it covers the log up to tree size <span class="cp-size">{size}</span>, root hash
<span class="mono cp-root">{root}</span>.</p>
<p>{checkpoint_line(size, root)}</p>
<p class="mono">{twin_hash_line(twin_hash)}</p>
<table><tr><th>Kind</th><th>Records</th></tr><tr><td>text</td><td>1000</td></tr>
<tr><td>média ünïcode — “quoted”</td><td>12</td></tr></table>
<h2 style="break-before: page">Findings</h2><p>None.</p>
</body></html>"""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def unsigned_pdf() -> bytes:
    return render_pdf(_html(_digest(TWIN)), TWIN, title="GDPR audit report 2026-11")


@pytest.fixture(scope="module", params=["p256", "rsa"])
def signed(request: pytest.FixtureRequest, unsigned_pdf: bytes) -> tuple[bytes, bytes]:
    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer", key_type=request.param)
    return sign_report(unsigned_pdf, key_pem=key_pem, cert_pem=cert_pem), cert_pem


def _pdfsig(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "pdfsig-input.pdf"
    path.write_bytes(pdf)
    run = subprocess.run([_tool("pdfsig"), str(path)], capture_output=True, text=True)
    return run.stdout + run.stderr


def _verapdf(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    if shutil.which("java") is None and not Path("/usr/lib/jvm/java-17-openjdk-amd64").is_dir():
        pytest.fail("Java 17 is not installed; veraPDF needs it")
    return subprocess.run(
        [str(VERAPDF), "--flavour", "3b", "--format", "text", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_signed_report_is_valid_for_pdfsig_and_verify(
    signed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    pdf, cert_pem = signed
    out = _pdfsig(pdf, tmp_path)
    assert "Signature is Valid" in out, out
    assert "Total document signed" in out, out
    assert "ETSI.CAdES.detached" in out, out
    result = verify_report(pdf, cert_pem=cert_pem)
    assert result.ok, result.failures
    assert {c.name for c in result.checks} >= {*REQUIRED_CHECKS, "signer_pinned"}
    assert result.pades_level == "B-B"
    assert result.twin == TWIN
    assert result.twin_sha256 == result.printed_twin_sha256 == _digest(TWIN)
    assert (result.checkpoint_size, result.checkpoint_root) == (1234, ROOT)


def test_verapdf_says_pdf_a_3b_before_and_after_signing(
    unsigned_pdf: bytes, tmp_path: Path
) -> None:
    files = {"unsigned": unsigned_pdf}
    for key_type in ("p256", "rsa"):
        key_pem, cert_pem = generate_dev_signing_pair("veraPDF check", key_type=key_type)
        files[key_type] = sign_report(unsigned_pdf, key_pem=key_pem, cert_pem=cert_pem)
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / f"{name}.pdf")
        paths[-1].write_bytes(data)
    run = _verapdf(paths)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert len(lines) == len(paths), run.stdout + run.stderr
    assert all(ln.startswith("PASS") and ln.endswith(" 3b") for ln in lines), run.stdout
    assert run.returncode == 0, run.stdout + run.stderr


def test_verapdf_catches_a_non_pdfa_file(tmp_path: Path) -> None:
    # Guards the check above against passing vacuously: a plain PDF must FAIL.
    from weasyprint import HTML

    plain = tmp_path / "plain.pdf"
    plain.write_bytes(HTML(string="<p>plain</p>").write_pdf())
    run = _verapdf([plain])
    assert run.stdout.startswith("FAIL"), run.stdout + run.stderr
    assert run.returncode != 0


def test_twin_is_an_associated_file_with_relationship(unsigned_pdf: bytes) -> None:
    from pypdf import PdfReader

    reader = PdfReader(BytesIO(unsigned_pdf))
    root = reader.trailer["/Root"]
    specs = [ref.get_object() for ref in root["/AF"]]
    assert len(specs) == 1
    spec = specs[0]
    assert spec["/UF"] == TWIN_FILENAME and spec["/AFRelationship"] == "/Data"
    stream = spec["/EF"]["/F"].get_object()
    assert stream["/Subtype"] == "/application/json"
    assert stream.get_data() == TWIN
    meta = reader.xmp_metadata
    assert meta is not None
    xml = meta.stream.get_data().decode()
    assert 'pdfaid:part="3"' in xml and 'pdfaid:conformance="B"' in xml, xml
    intents = [i.get_object() for i in root["/OutputIntents"]]
    assert intents and intents[0]["/S"] == "/GTS_PDFA1"


def test_fonts_are_embedded(unsigned_pdf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(unsigned_pdf)
    out = subprocess.run(
        [_tool("pdffonts"), str(path)], capture_output=True, text=True, check=True
    ).stdout
    rows = out.splitlines()[2:]
    assert rows, out
    assert all(" yes yes yes " in row for row in rows), out
    assert any("DejaVu" in row for row in rows), out


@pytest.mark.parametrize("where", ["first_range", "second_range", "signature_value"])
def test_one_edited_byte_fails_verify_and_pdfsig(
    signed: tuple[bytes, bytes], where: str, tmp_path: Path
) -> None:
    pdf, cert_pem = signed
    result = verify_report(pdf, cert_pem=cert_pem)
    assert result.ok
    start = pdf.rindex(b"/ByteRange")
    nums = pdf[start : pdf.index(b"]", start)].split(b"[")[1].split()
    _, a1, b0, b1 = (int(n) for n in nums)
    position = {
        "first_range": a1 // 2,
        "second_range": b0 + b1 // 2,
        "signature_value": a1 + 1 + 40,  # a hex digit inside the CMS structure
    }[where]
    edited = bytearray(pdf)
    original = edited[position]
    edited[position] = ord("7") if where == "signature_value" and original != ord("7") else (
        original ^ 0x01 if where != "signature_value" else ord("8")
    )
    assert bytes(edited) != pdf and len(edited) == len(pdf)
    result = verify_report(bytes(edited), cert_pem=cert_pem)
    assert not result.ok
    assert result.failures, result.checks
    out = _pdfsig(bytes(edited), tmp_path)
    assert not ("Signature is Valid" in out and "Total document signed" in out), out


def test_wrong_pinned_certificate_fails(signed: tuple[bytes, bytes]) -> None:
    pdf, _ = signed
    _, other_cert = generate_dev_signing_pair("Archive Report Signer")
    result = verify_report(pdf, cert_pem=other_cert)
    assert not result.ok
    assert [c.name for c in result.failures] == ["signer_pinned"]
    # Without a pin the same file verifies: the pin is what failed.
    assert verify_report(pdf).ok


def test_update_after_signing_fails_whole_document(
    signed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    pdf, cert_pem = signed
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    # A new page-level change appended as a proper incremental revision.
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    page[generic.NameObject("/Rotate")] = generic.NumberObject(90)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    changed = out.getvalue()
    result = verify_report(changed, cert_pem=cert_pem)
    assert [c.name for c in result.failures] == ["whole_document"], result.checks
    assert "Not total document signed" in _pdfsig(changed, tmp_path)
    # Junk bytes after %%EOF are no revision, and not "the whole document" either.
    junk = verify_report(pdf + b"%junk\n", cert_pem=cert_pem)
    assert [c.name for c in junk.failures] == ["whole_document"]


def test_printed_hash_must_match_the_twin() -> None:
    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer")
    wrong = render_pdf(_html("0" * 64), TWIN, title="t")
    result = verify_report(sign_report(wrong, key_pem=key_pem, cert_pem=cert_pem))
    assert [c.name for c in result.failures] == ["twin_hash_matches"]
    moved = render_pdf(_html(_digest(TWIN), size=1235), TWIN, title="t")
    result = verify_report(sign_report(moved, key_pem=key_pem, cert_pem=cert_pem))
    assert [c.name for c in result.failures] == ["checkpoint_printed"]


def test_unsigned_and_malformed_inputs_fail_without_raising(unsigned_pdf: bytes) -> None:
    result = verify_report(unsigned_pdf)
    assert not result.ok and [c.name for c in result.failures] == ["signature_present"]
    for junk in (b"", b"not a pdf", unsigned_pdf[: len(unsigned_pdf) // 2]):
        result = verify_report(junk)
        assert not result.ok and result.failures


def test_pades_b_lt_with_a_timestamp_authority(unsigned_pdf: bytes, tmp_path: Path) -> None:
    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer", key_type="rsa")
    with running_tsa() as tsa:
        pdf = sign_report(
            unsigned_pdf,
            key_pem=key_pem,
            cert_pem=cert_pem,
            tsa_url=tsa.url,
            trust_roots_pem=[tsa.root_pem],
        )
    out = _pdfsig(pdf, tmp_path)
    assert "Signature is Valid" in out, out
    result = verify_report(pdf, cert_pem=cert_pem)
    assert result.ok, result.failures
    assert result.pades_level == "B-LT"
    assert {"timestamp_valid", "whole_document"} <= {c.name for c in result.checks if c.ok}
    path = tmp_path / "b-lt.pdf"
    path.write_bytes(pdf)
    run = _verapdf([path])
    assert run.stdout.startswith("PASS") and run.returncode == 0, run.stdout + run.stderr


def test_unreachable_timestamp_authority_is_a_signing_error(unsigned_pdf: bytes) -> None:
    from reports.signing import SigningError

    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer")
    with running_tsa() as tsa:
        url = tsa.url
    with pytest.raises(SigningError, match="timestamp"):
        sign_report(unsigned_pdf, key_pem=key_pem, cert_pem=cert_pem, tsa_url=url)


def test_pages_rendered_to_png(
    signed: tuple[bytes, bytes],
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pdf, _ = signed
    base = os.environ.get("REPORT_ARTIFACTS_DIR")
    folder = Path(base) if base else tmp_path_factory.mktemp("report-pages")
    folder.mkdir(parents=True, exist_ok=True)
    key_type = request.node.callspec.params["signed"]
    src = folder / f"signed-report-{key_type}.pdf"
    src.write_bytes(pdf)
    for old in folder.glob(f"signed-report-{key_type}-page*.png"):
        old.unlink()
    subprocess.run(
        [_tool("pdftoppm"), "-r", "100", "-png", str(src), str(src.with_suffix("")) + "-page"],
        check=True,
        timeout=120,
    )
    pngs = sorted(folder.glob(f"signed-report-{key_type}-page*.png"))
    assert len(pngs) == 2, pngs  # the sample report has two pages
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, png


def test_rendering_fetches_nothing_from_outside() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        html = (
            f'<link rel="stylesheet" href="http://127.0.0.1:{port}/a.css">'
            f'<img src="http://127.0.0.1:{port}/b.png"><img src="file:///etc/hostname">'
            '<p>body</p>'
        )
        pdf = render_pdf(html, TWIN, title="t")
        # The same server IS reachable: only the renderer refused to ask it.
        import urllib.request

        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/probe", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert pdf.startswith(b"%PDF-")
    assert hits == ["/probe"]


def test_empty_title_refused() -> None:
    from reports.pdf import PdfRenderError

    with pytest.raises(PdfRenderError, match="title") as info:
        render_pdf("<p>x</p>", TWIN, title="  ")
    assert info.value.code == "report_pdf_render_failed"


def test_b_lt_without_the_tsa_root_is_refused(unsigned_pdf: bytes) -> None:
    from reports.signing import SigningError

    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer")
    with running_tsa() as tsa, pytest.raises(SigningError, match="validation path"):
        sign_report(unsigned_pdf, key_pem=key_pem, cert_pem=cert_pem, tsa_url=tsa.url)


def test_non_pades_signature_is_not_accepted(unsigned_pdf: bytes) -> None:
    from pyhanko.sign import fields, signers

    from reports.signing import load_signer

    key_pem, cert_pem = generate_dev_signing_pair("Archive Report Signer")
    meta = signers.PdfSignatureMetadata(
        field_name="Legacy", subfilter=fields.SigSeedSubFilter.ADOBE_PKCS7_DETACHED
    )
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(BytesIO(unsigned_pdf)), meta, signer=load_signer(key_pem, cert_pem)
    )
    result = verify_report(out.getvalue(), cert_pem=cert_pem)
    assert [c.name for c in result.failures] == ["signature_present"]
    assert "adbe.pkcs7.detached" in result.failures[0].detail


def test_twin_swapped_after_signing_is_neither_read_nor_accepted(
    signed: tuple[bytes, bytes], tmp_path: Path
) -> None:
    pdf, cert_pem = signed
    forged = b'{"checkpoint":{"root_hash":"' + b"00" * 32 + b'","size":1}}'
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    spec = writer.root["/AF"][0]
    spec["/EF"][generic.NameObject("/F")] = writer.add_object(
        generic.StreamObject(stream_data=forged)
    )
    writer.update_container(spec)
    out = BytesIO()
    writer.write(out)
    swapped = out.getvalue()
    from pypdf import PdfReader

    # The appended revision really does replace the attachment for an ordinary reader...
    latest = PdfReader(BytesIO(swapped)).trailer["/Root"]["/AF"][0].get_object()
    assert latest["/EF"]["/F"].get_object().get_data() == forged
    # ...but verification reads the signed revision and refuses the later change.
    result = verify_report(swapped, cert_pem=cert_pem)
    assert [c.name for c in result.failures] == ["whole_document"], result.checks
    assert result.twin == TWIN
    assert "Total document signed" not in _pdfsig(swapped, tmp_path)


def test_malformed_pin_fails(signed: tuple[bytes, bytes]) -> None:
    pdf, _ = signed
    result = verify_report(pdf, cert_pem=b"not a certificate")
    assert not result.ok
    assert "signer_pinned" in {c.name for c in result.failures}
