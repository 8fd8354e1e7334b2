"""C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys, pure.

A note is UTF-8 text ending in a newline, a blank line, then one signature line per
signer: ``— <name> <base64(key id ‖ signature)>``. The key id is the first 4 bytes
(big-endian) of ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)``; ``0x01`` is the Ed25519
algorithm byte. Key texts are those of Go's ``golang.org/x/mod/sumdb/note``:
verifier ``<name>+<hex key id>+base64(0x01 ‖ public key)``, signer
``PRIVATE+KEY+<name>+<hex key id>+base64(0x01 ‖ seed)``.

Every malformed input raises :class:`NoteError`; so does a note carrying no valid
signature from a known key, or a bad signature from a known key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from archiver.ledger.errors import NoteError

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> int:
    """First 4 bytes of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key), as an integer."""
    h = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(h[:4], "big")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("bad base64") from None


def _raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class Verifier:
    name: str
    key_id: int
    public_key: bytes  # raw 32-byte Ed25519 key

    @classmethod
    def from_key_text(cls, text: str) -> Verifier:
        """Parse ``name+hexid+base64(0x01‖pub)``; the id must match the key."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise NoteError("malformed verifier key")
        name, hid, b64 = parts
        try:
            kid = int(hid, 16)
        except ValueError:
            raise NoteError("malformed verifier key id") from None
        raw = _b64decode(b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key")
        if key_id(name, raw[1:]) != kid:
            raise NoteError("verifier key id does not match the key")
        return cls(name, kid, raw[1:])

    @property
    def key_text(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Signer:
    name: str
    key_id: int
    seed: bytes = field(repr=False)  # raw 32-byte Ed25519 private key

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh key (like Go's ``note.GenerateKey``)."""
        if not _valid_name(name):
            raise NoteError(f"invalid key name {name!r}")
        priv = Ed25519PrivateKey.generate()
        seed = priv.private_bytes_raw()
        return cls(name, key_id(name, _raw_public(priv.public_key())), seed)

    @classmethod
    def from_key_text(cls, text: str) -> Signer:
        """Parse ``PRIVATE+KEY+name+hexid+base64(0x01‖seed)``; the id must match."""
        parts = text.strip().split("+", 4)
        if (
            len(parts) != 5
            or parts[:2] != ["PRIVATE", "KEY"]
            or not _valid_name(parts[2])
            or len(parts[3]) != 8
        ):
            raise NoteError("malformed signer key")
        name, hid, b64 = parts[2:]
        try:
            kid = int(hid, 16)
        except ValueError:
            raise NoteError("malformed signer key id") from None
        raw = _b64decode(b64)
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("signer key is not an Ed25519 key")
        pub = _raw_public(Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key())
        if key_id(name, pub) != kid:
            raise NoteError("signer key id does not match the key")
        return cls(name, kid, raw[1:])

    @property
    def key_text(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{b64}"

    @property
    def verifier(self) -> Verifier:
        pub = _raw_public(Ed25519PrivateKey.from_private_bytes(self.seed).public_key())
        return Verifier(self.name, self.key_id, pub)

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


@dataclass(frozen=True, slots=True)
class Signature:
    name: str
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]
    verified_by: tuple[str, ...]  # key texts of the verifiers that checked out


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    if "\n\n" in text:
        raise NoteError("note text must not contain a blank line")
    if any((c < " " and c != "\n") for c in text):
        raise NoteError("note text has control characters")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Text ‖ "\\n" ‖ one signature line per signer (C2SP signed-note)."""
    _check_text(text)
    if not signers:
        raise NoteError("no signers")
    lines = []
    for s in signers:
        blob = s.key_id.to_bytes(4, "big") + s.sign(text.encode())
        lines.append(f"{SIG_PREFIX}{s.name} {base64.b64encode(blob).decode()}\n")
    return text + "\n" + "".join(lines)


def parse_note(message: str) -> tuple[str, tuple[Signature, ...]]:
    """Split a signed note into its text and signature lines (nothing verified)."""
    split = message.rfind("\n\n")
    if split < 0 or not message.endswith("\n"):
        raise NoteError("malformed note")
    text, sig_block = message[: split + 1], message[split + 2 :]
    _check_text(text)
    sigs: list[Signature] = []
    for line in sig_block.splitlines():
        if not line.startswith(SIG_PREFIX):
            raise NoteError("malformed signature line")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not _valid_name(parts[0]):
            raise NoteError("malformed signature line")
        blob = _b64decode(parts[1])
        if len(blob) < 5:
            raise NoteError("signature too short")
        sigs.append(Signature(parts[0], int.from_bytes(blob[:4], "big"), blob[4:]))
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(sigs)} signatures")
    return text, tuple(sigs)


def open_note(message: str, verifiers: Sequence[Verifier]) -> Note:
    """Parse and verify a signed note. Signatures by unknown keys are ignored (as in Go);
    a bad signature by a known key, or no known signature at all, raises NoteError."""
    text, sigs = parse_note(message)
    known = {(v.name, v.key_id): v for v in verifiers}
    ok: list[str] = []
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue
        if not v.verify(text.encode(), s.signature):
            raise NoteError(f"invalid signature for key {s.name}+{s.key_id:08x}")
        ok.append(v.key_text)
    if not ok:
        raise NoteError("no signature from a known key")
    return Note(text, sigs, tuple(ok))
