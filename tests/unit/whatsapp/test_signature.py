"""X-Hub-Signature-256 vectors (fixtures README §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.api.errors import http_status
from archiver.whatsapp import SignatureError, verify_signature


def _vectors(root: Path) -> list[dict[str, Any]]:
    return list(json.loads((root / "signature" / "signature_vectors.json").read_text()))


def _cases(root: Path) -> list[tuple[bytes, str, bytes]]:
    out = []
    for v in _vectors(root):
        secret = v["app_secret"].encode()
        if "body_file" in v:
            out.append(((root / "signature" / v["body_file"]).read_bytes(), v["header_value"],
                        secret))
        elif "body_escaped_bytes" in v:
            out.append((v["body_escaped_bytes"].encode(), v["header_for_escaped"], secret))
            out.append((v["body_utf8"].encode(), v["header_for_utf8"], secret))
        else:
            out.append((v["body_utf8"].encode(), v["header_value"], secret))
    return out


def test_every_vector_verifies(fixtures_root: Path) -> None:
    cases = _cases(fixtures_root)
    assert len(cases) == 5
    for body, header, secret in cases:
        assert verify_signature(body, header, [secret]) == 0


def test_index_of_matching_secret(fixtures_root: Path) -> None:
    body, header, secret = _cases(fixtures_root)[0]
    assert verify_signature(body, header, [b"old", b"other", secret]) == 2


def test_uppercase_hex_accepted(fixtures_root: Path) -> None:
    body, header, secret = _cases(fixtures_root)[0]
    assert verify_signature(body, "sha256=" + header[7:].upper(), [secret]) == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"), ("", "missing"), ("   ", "missing"),
        ("sha1=2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "malformed"),
        ("54edfa1d7259e0eb13c677cc7d73d1b5c86cfa12433d19156e058ab9251bc441", "malformed"),
        ("sha256=zz", "malformed"), ("sha256=" + "g" * 64, "malformed"),
        ("SHA256=54edfa1d7259e0eb13c677cc7d73d1b5c86cfa12433d19156e058ab9251bc441", "malformed"),
        ("sha256=" + "0" * 64, "mismatch"),
    ],
)
def test_refusals(fixtures_root: Path, header: str | None, reason: str) -> None:
    body, _, secret = _cases(fixtures_root)[0]
    with pytest.raises(SignatureError) as info:
        verify_signature(body, header, [secret])
    assert info.value.reason == reason
    assert http_status(info.value.code) == 401  # the status is the API's, by code


def test_wrong_secret_and_reserialised_body(fixtures_root: Path) -> None:
    body, header, secret = _cases(fixtures_root)[0]
    with pytest.raises(SignatureError, match="mismatch"):
        verify_signature(body, header, [b"wrong"])
    with pytest.raises(SignatureError, match="mismatch"):
        verify_signature(body, header, [])
    pretty = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(SignatureError, match="mismatch"):
        verify_signature(pretty, header, [secret])
    v3 = next(v for v in _vectors(fixtures_root) if v["id"] == "vector3_computed")
    raw = (fixtures_root / "signature" / v3["body_file"]).read_bytes()
    with pytest.raises(SignatureError, match="mismatch"):
        verify_signature(raw, v3["same_object_pretty_printed_header"], [v3["app_secret"].encode()])
