"""Report-signing key material: RSA and P-256 accepted, everything else refused clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from reports.signing import SigningKeyError, generate_dev_signing_pair, load_signer, sign_report


def _pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _self_signed(key: object, days: tuple[int, int] = (-1, 30)) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now + timedelta(days=days[0]))
        .not_valid_after(now + timedelta(days=days[1]))
        .sign(key, algo)  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("key_type", ["p256", "rsa"])
def test_dev_pair_loads_as_signer(key_type: str) -> None:
    key_pem, cert_pem = generate_dev_signing_pair("Archive Dev", key_type=key_type)
    signer = load_signer(key_pem, cert_pem)
    assert signer.signing_cert is not None
    assert signer.signing_cert.subject.native["common_name"] == "Archive Dev"
    cert = x509.load_pem_x509_certificate(cert_pem)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey if key_type == "p256" else rsa.RSAPrivateKey)


def test_ed25519_key_refused_clearly() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(SigningKeyError, match=r"Ed25519.*not accepted|RSA or P-256") as info:
        sign_report(b"%PDF-1.7\n", key_pem=_pem(key), cert_pem=_self_signed(key))
    assert info.value.code == "report_signing_key_invalid"


def test_other_curve_refused() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SigningKeyError, match="secp384r1; only P-256"):
        load_signer(_pem(key), _self_signed(key))


def test_short_rsa_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    with pytest.raises(SigningKeyError, match="1024 bits"):
        load_signer(_pem(key), _self_signed(key))


def test_certificate_of_another_key_refused() -> None:
    key_pem, _ = generate_dev_signing_pair("a")
    _, other_cert = generate_dev_signing_pair("b")
    with pytest.raises(SigningKeyError, match="does not match the key"):
        load_signer(key_pem, other_cert)


def test_expired_certificate_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SigningKeyError, match="not valid now"):
        load_signer(_pem(key), _self_signed(key, days=(-30, -1)))


@pytest.mark.parametrize(
    ("key_pem", "cert_pem", "message"),
    [
        (b"not a key", b"", "not an unencrypted PEM key"),
        (None, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM"),
        (None, b"", "PEM certificate|no certificate"),
    ],
)
def test_malformed_pem_refused(key_pem: bytes | None, cert_pem: bytes, message: str) -> None:
    good_key, _ = generate_dev_signing_pair("x")
    with pytest.raises(SigningKeyError, match=message):
        load_signer(key_pem or good_key, cert_pem)


def test_encrypted_key_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(SigningKeyError, match="not an unencrypted PEM key"):
        load_signer(pem, _self_signed(key))


def test_dev_pair_arguments_checked() -> None:
    with pytest.raises(SigningKeyError, match="unknown dev key type"):
        generate_dev_signing_pair("x", key_type="ed25519")
    with pytest.raises(SigningKeyError, match="common name"):
        generate_dev_signing_pair("  ")
