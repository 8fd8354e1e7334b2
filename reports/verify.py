"""Offline verification of a signed report PDF: signature, coverage, twin, printed hash.

``verify_report`` is handed the PDF bytes and, optionally, the certificate the verifier
expects (pinned); it does no I/O and fetches nothing (no OCSP, CRL or AIA). It checks:

1. ``signature_present``   exactly one document signature, PAdES (``/SubFilter
                           /ETSI.CAdES.detached``); document timestamps aside;
2. ``signature_intact``    the signed bytes hash to the digest in the CMS (ETSI EN 319 142);
3. ``signature_valid``     the CMS signature verifies under the signer certificate's key;
4. ``whole_document``      the signature covers the whole file (B-B), or its revision is
                           followed only by DSS / document-timestamp updates (B-LT),
                           as pyHanko's difference analysis decides;
5. ``signer_pinned``       the signer's certificate equals ``cert_pem`` (only if given);
   ``timestamp_valid``     the signature timestamp token verifies (B-T/B-LT only; a
                           failing one fails the report);
6. ``twin_found``          the signed revision holds exactly one associated file (catalog
                           ``/AF``) named ``report-twin.json``;
7. ``twin_hash_printed``   the pages of the signed revision print ``Twin SHA-256 <hex>``;
8. ``twin_hash_matches``   every printed hash equals the SHA-256 of the extracted twin;
9. ``checkpoint_printed``  every printed ``Checkpoint tree size`` / ``Checkpoint root``
                           equals the twin's ``checkpoint.size`` / ``checkpoint.root_hash``
                           (labels: ``reports.labels``).

The twin and page text are read from the *signed revision* (the bytes the signature's
``/ByteRange`` ends at), never from later incremental updates, so nothing appended after
signing can stand in for them. The log checkpoint named by the twin is returned for the
caller, which verifies it against the log's public key (that needs ``archiver.ledger``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from io import BytesIO
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, StreamObject

from reports.labels import TWIN_FILENAME, find_printed

# Every name that must be present and ok for a report to verify.
REQUIRED_CHECKS = (
    "signature_present",
    "signature_intact",
    "signature_valid",
    "whole_document",
    "twin_found",
    "twin_hash_printed",
    "twin_hash_matches",
    "checkpoint_printed",
)


@dataclass(frozen=True)
class Check:
    """One verification step: its name, whether it held, and what was seen."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ReportVerification:
    """What held and what failed; ``ok`` only when every required check (and the pin, when
    a certificate was given) is present and held."""

    checks: tuple[Check, ...]
    pinned: bool = False
    signer_subject: str | None = None
    signer_cert_sha256: str | None = None
    signing_time: datetime | None = None
    pades_level: str | None = None  # "B-B", "B-T" or "B-LT"
    twin: bytes | None = field(default=None, repr=False)
    twin_sha256: str | None = None
    printed_twin_sha256: str | None = None
    checkpoint_size: int | None = None
    checkpoint_root: str | None = None
    checkpoint_note: str | None = None  # signed checkpoint text, when the twin carries one

    @property
    def ok(self) -> bool:
        held = {c.name for c in self.checks if c.ok}
        failed = any(not c.ok for c in self.checks)
        need = (*REQUIRED_CHECKS, "signer_pinned") if self.pinned else REQUIRED_CHECKS
        return not failed and all(n in held for n in need)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


class _Checks:
    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.items.append(Check(name, ok, detail))
        return ok


def verify_report(
    pdf: bytes, *, cert_pem: bytes | None = None, twin_name: str = TWIN_FILENAME
) -> ReportVerification:
    """Verify a signed report offline; never raises on a bad or malformed PDF (the result
    says what failed). ``cert_pem`` pins the signer's certificate (PEM; the first one)."""
    checks = _Checks()
    info: dict[str, Any] = {"pinned": cert_pem is not None}
    try:
        _verify(pdf, cert_pem, twin_name, checks, info)
    except Exception as exc:  # a malformed PDF can fail anywhere in two parsers
        checks.add("pdf_readable", False, f"{type(exc).__name__}: {exc}")
    return ReportVerification(checks=tuple(checks.items), **info)


def _verify(
    pdf: bytes, cert_pem: bytes | None, twin_name: str, checks: _Checks, info: dict[str, Any]
) -> None:
    pinned_der = _pinned_der(cert_pem, checks) if cert_pem is not None else None
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    sigs = list(reader.embedded_regular_signatures)
    subfilters = [str(s.sig_object.get("/SubFilter")) for s in sigs]
    pades = subfilters == ["/ETSI.CAdES.detached"]
    if not checks.add(
        "signature_present",
        pades,
        f"{len(sigs)} document signature(s), SubFilter {', '.join(subfilters) or 'none'}"
        + ("" if pades else "; want exactly one /ETSI.CAdES.detached (PAdES)"),
    ):
        return
    sig = sigs[0]
    signer = sig.signer_cert
    signer_der: bytes = signer.dump()
    info["signer_subject"] = signer.subject.human_friendly
    info["signer_cert_sha256"] = hashlib.sha256(signer_der).hexdigest()
    # Trust is the pin below (certificate equality), not a chain to a root: the context has
    # no roots and fetches nothing, so only the cryptographic results are read from it.
    context = ValidationContext(trust_roots=[], allow_fetching=False, revocation_mode="soft-fail")
    status = validate_pdf_signature(sig, context, skip_diff=False)
    checks.add(
        "signature_intact",
        bool(status.intact),
        "digest of the signed bytes "
        + ("matches the signed attributes" if status.intact else "differs: the file was altered"),
    )
    checks.add(
        "signature_valid",
        bool(status.valid),
        f"{status.md_algorithm} signature " + ("verifies" if status.valid else "does NOT verify"),
    )
    info["signing_time"] = status.signer_reported_dt
    ts = status.timestamp_validity
    has_ts = ts is not None
    if ts is not None:
        ts_ok = bool(ts.intact and ts.valid)
        checks.add(
            "timestamp_valid",
            ts_ok,
            f"signature timestamp {ts.timestamp:%Y-%m-%dT%H:%M:%SZ} "
            + ("verifies" if ts_ok else "does NOT verify"),
        )
        info["signing_time"] = ts.timestamp
    dss = "/DSS" in reader.root
    info["pades_level"] = "B-LT" if has_ts and dss else "B-T" if has_ts else "B-B"
    later = reader.xrefs.total_revisions - 1 - sig.signed_revision
    whole, detail = _coverage(status, len(pdf), sig.byte_range, later)
    checks.add("whole_document", whole, detail)
    if pinned_der is not None:
        checks.add(
            "signer_pinned",
            signer_der == pinned_der,
            "signer certificate equals the pinned one"
            if signer_der == pinned_der
            else f"signer is {signer.subject.human_friendly!r}, not the pinned certificate",
        )
    br = [int(x) for x in sig.byte_range]
    _check_twin(pdf[: br[2] + br[3]], twin_name, checks, info)


def _pinned_der(cert_pem: bytes, checks: _Checks) -> bytes | None:
    try:
        return x509.load_pem_x509_certificates(cert_pem)[0].public_bytes(
            serialization.Encoding.DER
        )
    except (ValueError, IndexError) as exc:
        checks.add("signer_pinned", False, f"pinned certificate is not PEM: {exc}")
        return None


def _coverage(status: Any, size: int, byte_range: Any, later_revisions: int) -> tuple[bool, str]:
    br = [int(x) for x in byte_range]
    end = br[2] + br[3]
    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE and end == size:
        return True, f"signed ranges cover all {size} bytes but the signature value"
    if status.coverage != SignatureCoverageLevel.ENTIRE_REVISION:
        return False, f"coverage {getattr(status.coverage, 'name', status.coverage)}"
    if later_revisions == 0:
        # Bytes after %%EOF that form no revision: readers ignore them, pdfsig does not.
        return False, f"{size - end} bytes after the signed revision are not a PDF revision"
    level = status.modification_level
    if level is not None and level <= ModificationLevel.LTA_UPDATES and status.docmdp_ok:
        return True, (
            f"signed revision ends at byte {end}; {later_revisions} later revision(s) only "
            "add validation data (DSS) or document timestamps"
        )
    return False, (
        f"signed revision ends at byte {end} of {size}; {later_revisions} later revision(s) "
        f"change the document ({getattr(level, 'name', level)})"
    )


def _check_twin(signed: bytes, twin_name: str, checks: _Checks, info: dict[str, Any]) -> None:
    reader = PdfReader(BytesIO(signed), strict=False)
    found = _associated_files(reader, twin_name)
    if not checks.add(
        "twin_found", len(found) == 1, f"{len(found)} associated file(s) named {twin_name!r}"
    ):
        return
    twin = found[0]
    digest = hashlib.sha256(twin).hexdigest()
    info["twin"] = twin
    info["twin_sha256"] = digest
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    printed, sizes, roots = find_printed(text)
    checks.add("twin_hash_printed", bool(printed), f"{len(printed)} distinct hash(es) on pages")
    if printed:
        info["printed_twin_sha256"] = sorted(printed)[0]
        checks.add(
            "twin_hash_matches",
            printed == {digest},
            f"twin {digest}; pages print {', '.join(sorted(printed))}",
        )
    size, root, note = _twin_checkpoint(twin)
    info.update(checkpoint_size=size, checkpoint_root=root, checkpoint_note=note)
    if size is None or root is None:
        checks.add("checkpoint_printed", False, "the twin names no checkpoint (size, root_hash)")
    else:
        checks.add(
            "checkpoint_printed",
            sizes == {size} and roots == {root},
            f"twin: tree size {size}, root {root}; pages: tree size "
            f"{sorted(sizes) or 'none'}, root {sorted(roots) or 'none'}",
        )


def _resolve(value: Any) -> Any:
    return value.get_object() if isinstance(value, IndirectObject) else value


def _associated_files(reader: PdfReader, name: str) -> list[bytes]:
    """The embedded files listed in the catalog's /AF (ISO 19005-3 §6.8) under ``name``."""
    root = _resolve(reader.trailer.get("/Root"))
    af = _resolve(root.get("/AF")) if isinstance(root, DictionaryObject) else None
    out: list[bytes] = []
    if not isinstance(af, ArrayObject):
        return out
    seen: set[int] = set()
    for ref in af:
        # The same file specification listed twice is one associated file, not two.
        if isinstance(ref, IndirectObject):
            if ref.idnum in seen:
                continue
            seen.add(ref.idnum)
        spec = _resolve(ref)
        if not isinstance(spec, DictionaryObject):
            continue
        if str(spec.get("/UF", spec.get("/F", ""))) != name:
            continue
        ef = _resolve(spec.get("/EF"))
        stream = _resolve(ef.get("/F")) if isinstance(ef, DictionaryObject) else None
        if isinstance(stream, StreamObject):
            out.append(stream.get_data())
    return out


def _twin_checkpoint(twin: bytes) -> tuple[int | None, str | None, str | None]:
    try:
        data = json.loads(twin.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, None, None
    cp = data.get("checkpoint") if isinstance(data, dict) else None
    if not isinstance(cp, dict):
        return None, None, None
    size, root, note = cp.get("size"), cp.get("root_hash"), cp.get("note")
    return (
        size if isinstance(size, int) and not isinstance(size, bool) else None,
        root.lower() if isinstance(root, str) else None,
        note if isinstance(note, str) else None,
    )
