"""HTML → PDF/A-3b with the machine-readable twin attached (weasyprint), before signing.

ISO 19005-3 (PDF/A-3) allows embedded files of any type when each is an *associated file*:
the file specification carries ``/AFRelationship`` and is listed in the catalog's ``/AF``
array. weasyprint does both for ``pdf_variant="pdf/a-3b"`` and writes the XMP
identification (``pdfaid:part=3``, ``conformance=B``) and an sRGB output intent. Fonts are
embedded (subsets) by weasyprint; the system must have them (DejaVu, fonts-dejavu-core).

The HTML may load nothing from outside: only ``data:`` URLs are fetched, so a value that
slipped into a template can neither read local files nor reach the network.

Raises ``PdfRenderError`` (a ``ReportPdfError``) when weasyprint fails.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from weasyprint import HTML, Attachment, URLFetcher

from reports.labels import TWIN_FILENAME


class ReportPdfError(Exception):
    """Root of the PDF, signing and verification errors of ``reports``.

    Tree::

        ReportPdfError
        ├── PdfRenderError        weasyprint could not render the HTML
        └── SigningKeyError       key/certificate unusable (``reports.signing``)
    """

    code = "report_pdf_error"


class PdfRenderError(ReportPdfError):
    code = "report_pdf_render_failed"


# PDF/A-3 §6.8: the relationship of the twin to the document. "Data": the twin holds the
# data the pages are a rendering of (ISO 32000-2 §7.11.3).
TWIN_RELATIONSHIP = "Data"
TWIN_DESCRIPTION = "Machine-readable twin of this report (canonical JSON, RFC 8785)"
PDF_VARIANT = "pdf/a-3b"


def _dedupe_associated_files(_document: Any, pdf: Any) -> None:
    """weasyprint lists an attachment in the catalog's /AF twice (once from the name tree,
    once from the file specification); keep each reference once."""
    af = pdf.catalog.get("AF")
    if af is not None:
        unique = list(dict.fromkeys(af))
        af.clear()
        af.extend(unique)


def render_pdf(
    html: str,
    twin: bytes,
    *,
    title: str,
    twin_name: str = TWIN_FILENAME,
    generated_at: datetime | None = None,
    author: str | None = None,
) -> bytes:
    """Render ``html`` to a PDF/A-3b document with ``twin`` as its associated file.

    ``generated_at`` (UTC, default now) stamps the document and attachment dates. The twin's
    bytes are embedded unchanged; the PDF's own bytes may still differ between runs (font
    subsets), which is why the twin, not the PDF, is the reproducible artefact.
    ``title`` overrides the HTML ``<title>``: PDF/A wants a title in the XMP.
    """
    if not title.strip():
        raise PdfRenderError("a report PDF needs a title")
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    fetcher = URLFetcher(allowed_protocols=["data"], allow_redirects=False)
    try:
        document = HTML(string=html, base_url=None, url_fetcher=fetcher).render()
        document.metadata.title = title
        document.metadata.created = stamp
        document.metadata.modified = stamp
        if author:
            document.metadata.authors = [author]
        # weasyprint's PDF/A writer sets /AFRelationship from this attachment's
        # ``relationship`` and lists it in the catalog's /AF (ISO 19005-3 §6.8).
        attachment = Attachment(
            string=twin,
            name=twin_name,
            description=TWIN_DESCRIPTION,
            created=when,
            modified=when,
            relationship=TWIN_RELATIONSHIP,
        )
        out = document.write_pdf(
            pdf_variant=PDF_VARIANT, attachments=[attachment], finisher=_dedupe_associated_files
        )
    except Exception as exc:  # weasyprint raises many types; one domain error for callers
        raise PdfRenderError(f"weasyprint could not render the report: {exc}") from exc
    if not isinstance(out, bytes):  # write_pdf() without a target returns bytes
        raise PdfRenderError("weasyprint returned no PDF bytes")
    return out
