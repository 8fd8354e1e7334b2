"""PAdES signing of a report PDF (pyHanko), by incremental update, keeping PDF/A-3b.

ETSI EN 319 142-1 (PAdES): baseline B-B is a CMS signature with ``/SubFilter
/ETSI.CAdES.detached`` and a signed ``signing-certificate-v2`` attribute; B-LT adds a
signature timestamp (B-T, RFC 3161) and the validation data in the document security store
(DSS) as a later incremental revision. pyHanko appends the signature as an incremental
update, so the weasyprint PDF/A-3b bytes (and the twin attached to them) stay untouched
below it and are covered by the signature.

PDF/A-3b survives signing because the signature field is invisible (no appearance stream
needs a font) and pyHanko adds no custom XMP extension schema.

Keys: RSA (2048 bits or more) or ECDSA P-256, given as PEM (PKCS#8 or traditional) with the
matching certificate as PEM. Ed25519/Ed448 and other curves are refused with
``SigningKeyError``: the log's Ed25519 key is not a report-signing key, and PAdES
validators (Acrobat, pdfsig) do not all accept EdDSA.

Synchronous: ``sign_report`` runs pyHanko's own event loop, so call it from a worker thread,
not from inside a running asyncio loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from io import BytesIO

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from reports.pdf import ReportPdfError

SIGNATURE_FIELD = "ReportSignature"
MIN_RSA_BITS = 2048


class SigningKeyError(ReportPdfError):
    """The key or certificate cannot sign reports (wrong type, mismatch, expired, bad PEM)."""

    code = "report_signing_key_invalid"


class SigningError(ReportPdfError):
    """pyHanko could not sign (malformed PDF, timestamp authority unreachable, ...)."""

    code = "report_signing_failed"


def _load_key(key_pem: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"report-signing key is not an unencrypted PEM key: {exc}") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SigningKeyError(
                f"report-signing RSA key has {key.key_size} bits; at least {MIN_RSA_BITS}"
            )
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SigningKeyError(
                f"report-signing EC key is on {key.curve.name}; only P-256 (secp256r1)"
            )
        return key
    raise SigningKeyError(
        f"report-signing key type {type(key).__name__} is not supported; use RSA or P-256 "
        "(Ed25519 is the log's checkpoint key type and is not accepted for PAdES reports)"
    )


def _load_certs(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SigningKeyError(f"{what} is not a PEM certificate: {exc}") from exc
    if not certs:
        raise SigningKeyError(f"{what} holds no certificate")
    return certs


def _to_asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _check_pair(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cert: x509.Certificate, now: datetime
) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise SigningKeyError("report-signing certificate does not match the key")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningKeyError(
            "report-signing certificate is not valid now "
            f"({cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def load_signer(key_pem: bytes, cert_pem: bytes) -> signers.SimpleSigner:
    """A pyHanko signer from PEM bytes: ``cert_pem`` is the signer's certificate followed by
    any intermediates (embedded in the CMS so verifiers can build the chain).

    Raises ``SigningKeyError`` on a wrong key type, a mismatch or an expired certificate.
    """
    key = _load_key(key_pem)
    certs = _load_certs(cert_pem, "report-signing certificate")
    _check_pair(key, certs[0], datetime.now(UTC))
    key_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    asn1_certs = [_to_asn1_cert(c) for c in certs]
    registry = SimpleCertificateStore()  # type: ignore[no-untyped-call]  # untyped __init__ upstream
    registry.register_multiple(asn1_certs)
    return signers.SimpleSigner(
        signing_cert=asn1_certs[0],
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=registry,
    )


def sign_report(
    pdf: bytes,
    *,
    key_pem: bytes,
    cert_pem: bytes,
    tsa_url: str | None = None,
    trust_roots_pem: Sequence[bytes] = (),
    reason: str = "Audit report issued by the archive",
    location: str | None = None,
    timestamper: timestamps.TimeStamper | None = None,
) -> bytes:
    """Sign ``pdf`` PAdES B-B, or B-LT when ``tsa_url`` (or a ``timestamper``) is given.

    B-LT embeds the validation data of the signer's chain and of the timestamp authority's;
    ``trust_roots_pem`` names the roots those chains end in (the signer's own certificate is
    trusted as a root, which covers a self-signed dev pair). Revocation data is fetched
    online at signing time (B-LT's point); verification later is offline.

    Raises ``SigningKeyError`` for unusable key material, ``SigningError`` otherwise.
    """
    signer = load_signer(key_pem, cert_pem)
    if tsa_url is not None and timestamper is None:
        timestamper = timestamps.HTTPTimeStamper(tsa_url)
    lt = timestamper is not None
    validation_context: ValidationContext | None = None
    if lt:
        roots = [c for pem in trust_roots_pem for c in _load_certs(pem, "trust root")]
        roots.append(_load_certs(cert_pem, "report-signing certificate")[-1])
        validation_context = ValidationContext(
            trust_roots=[_to_asn1_cert(c) for c in roots], allow_fetching=True
        )
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        embed_validation_info=lt,
        validation_context=validation_context,
        use_pades_lta=False,
    )
    # No box: an invisible signature, so no appearance stream and no font to embed (PDF/A).
    field_spec = fields.SigFieldSpec(sig_field_name=SIGNATURE_FIELD, box=None)
    pdf_signer = signers.PdfSigner(
        meta, signer=signer, timestamper=timestamper, new_field_spec=field_spec
    )
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
        out = pdf_signer.sign_pdf(writer)
    except SigningKeyError:
        raise
    except Exception as exc:  # pyHanko, asn1crypto and aiohttp raise many types
        raise SigningError(f"could not sign the report: {exc}") from exc
    signed = out.getvalue() if isinstance(out, BytesIO) else None
    if not signed:
        raise SigningError("pyHanko returned no signed PDF")
    return signed


def generate_dev_signing_pair(
    common_name: str, *, key_type: str = "p256", valid_days: int = 3650
) -> tuple[bytes, bytes]:
    """A self-signed (key PEM, certificate PEM) pair for dev mode, P-256 or RSA-3072.

    The certificate allows digital signatures and non-repudiation (content commitment),
    which pyHanko's validator asks of a signer. Production must configure a real pair.
    """
    if not common_name.strip():
        raise SigningKeyError("a dev signing certificate needs a common name")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise SigningKeyError(f"unknown dev key type {key_type!r}; use 'p256' or 'rsa'")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "wa-archiver dev (self-signed)"),
        ]
    )
    now = datetime.now(UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
