"""Envelope encryption and KEK wrapping (no I/O)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archiver.keys import (
    DataKey,
    DecryptionFailed,
    KekError,
    LocalKek,
    MalformedEnvelope,
    decrypt,
    encrypt,
    envelope_key_id,
    new_data_key,
)


@given(st.binary(max_size=2000), st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    dk = new_data_key()
    blob = encrypt(dk, plaintext, aad)
    assert envelope_key_id(blob) == dk.key_id
    assert decrypt(dk, blob, aad) == plaintext


def test_layout() -> None:
    dk = DataKey("k1", bytes(32))
    blob = encrypt(dk, b"hello", b"rec-1")
    assert blob[:4] == b"\x01\x02k1"
    assert len(blob) == 4 + 12 + 5 + 16


def test_wrong_aad_fails() -> None:
    dk = new_data_key()
    blob = encrypt(dk, b"secret", b"record-1")
    with pytest.raises(DecryptionFailed):
        decrypt(dk, blob, b"record-2")


def test_wrong_key_and_tampering_fail() -> None:
    dk = new_data_key()
    blob = encrypt(dk, b"secret")
    with pytest.raises(DecryptionFailed):
        decrypt(DataKey(dk.key_id, bytes(32)), blob)
    flipped = bytearray(blob)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionFailed):
        decrypt(dk, bytes(flipped))
    with pytest.raises(DecryptionFailed, match="sealed under key"):
        decrypt(new_data_key(), blob)


def test_key_id_is_authenticated() -> None:
    dk = DataKey("aa", bytes(range(32)))
    blob = bytearray(encrypt(dk, b"x"))
    blob[2:4] = b"ab"  # same length, other id, same secret under it
    with pytest.raises(DecryptionFailed):
        decrypt(DataKey("ab", dk.secret), bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x02\x01a" + bytes(40), b"\x01\x00" + bytes(40),
                                  b"\x01\x05abc"])
def test_malformed(blob: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        envelope_key_id(blob)


def test_secret_not_in_repr() -> None:
    dk = DataKey("k", b"S" * 32)
    assert "SSSS" not in repr(dk)
    assert "local:" in repr(LocalKek(bytes(32)))


def test_kek_wrap_unwrap_and_ids(tmp_path: Path) -> None:
    kek = LocalKek.generate()
    dk = new_data_key()
    wrapped = kek.wrap(dk.secret)
    assert wrapped != dk.secret and len(wrapped) == 40  # RFC 3394 adds 8 bytes
    assert kek.unwrap(wrapped) == dk.secret
    with pytest.raises(DecryptionFailed):
        LocalKek.generate().unwrap(wrapped)
    raw = bytes(range(32))
    b64 = base64.b64encode(raw).decode()
    f = tmp_path / "kek"
    f.write_text(b64 + "\n")
    assert LocalKek.from_settings(path=f).kek_id == LocalKek(raw).kek_id
    assert LocalKek.from_settings(b64=b64).kek_id == LocalKek(raw).kek_id
    assert LocalKek(raw).kek_id != kek.kek_id


@pytest.mark.parametrize("kw", [{}, {"b64": "not base64!"},
                                {"b64": base64.b64encode(b"short").decode()},
                                {"path": Path("/nonexistent/kek")}])
def test_kek_settings_errors(kw: dict[str, object]) -> None:
    with pytest.raises(KekError):
        LocalKek.from_settings(**kw)  # type: ignore[arg-type]
