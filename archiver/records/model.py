"""The record: one event of the archive, as immutable canonical bytes (pure code).

A record has a clear header and a sealed body::

    {
      "v": 1, "record_id": "r_…", "kind": "message", "origin": "customer",
      "direction": "inbound", "message_type": "text",
      "business": {"phone_number_id": "…", "display_phone_number": "…", "waba_id": "…"},
      "subject": "s_…", "conversation": "c_…", "message_ref": "m_…",
      "refs": {"reply_to": "m_…", "edit_of": "m_…", "revoke_of": "m_…", "reaction_to": "m_…"},
      "status": "delivered", "occurred_at": "…Z", "captured_at": "…Z",
      "raw": {"key": "raw/…", "version_id": "…", "sha256": "…", "slot": 0},
      "policy": {"id": "finra_4511", "retain_until": "…Z", "lock_mode": "COMPLIANCE"},
      "flags": ["conflict", "unknown_fields"], "content_mac": "h_…",
      "sealed": {"alg": "A256GCM", "key_id": "…", "nonce": "…", "ct": "…"}
    }

The header holds business identifiers and pseudonyms only, never a phone number or a
name of a person; everything personal (the event itself) is in ``sealed``, encrypted
under the data subject's key, so destroying that key erases it (crypto-shredding).
Bytes are RFC 8785 canonical JSON, so the hash is reproducible anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from archiver.errors import ArchiverError
from archiver.keyspace import record_key
from archiver.records import canonical


class RecordError(ArchiverError):
    code = "record_invalid"


class SealedContentUnavailable(RecordError):
    code = "content_shredded"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_PLAIN = frozenset({str, int, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}


def to_jsonable(value: Any) -> Any:
    """Event dataclasses → plain JSON (datetimes ISO 8601 UTC, tuples as lists)."""
    # Fast paths (same output): exact plain types, and the field names of each event
    # dataclass looked up once — this runs for every value of every record.
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _FIELDS.get(kind)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if kind is dict:
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset | set) else items
    if isinstance(value, float) and value.is_integer():
        return value  # rfc8785 serialises floats canonically
    return value


def seal(content: Mapping[str, Any], *, key: bytes, key_id: str, aad: str) -> dict[str, str]:
    nonce = os.urandom(12)
    ct = AESGCM(key).encrypt(nonce, canonical.dumps(dict(content)), aad.encode())
    return {
        "alg": "A256GCM",
        "key_id": key_id,
        "nonce": base64.b64encode(nonce).decode(),
        "ct": base64.b64encode(ct).decode(),
    }


def unseal(sealed: Mapping[str, str], *, key: bytes, aad: str) -> dict[str, Any]:
    try:
        plain = AESGCM(key).decrypt(
            base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ct"]), aad.encode()
        )
    except (InvalidTag, KeyError, ValueError) as exc:
        raise RecordError("sealed content fails authentication") from exc
    content: dict[str, Any] = json.loads(plain)
    return content


@dataclass(frozen=True, slots=True)
class Record:
    record_id: str
    key: str
    header: Mapping[str, Any]  # everything but nothing personal in clear
    body: bytes  # canonical bytes as stored
    sha256: str

    @classmethod
    def build(
        cls,
        header: Mapping[str, Any],
        content: Mapping[str, Any],
        *,
        data_key: bytes,
        key_id: str,
    ) -> Record:
        """The one constructor: seal the content, canonicalise, hash."""
        record_id = str(header["record_id"])
        full = dict(header)
        full["sealed"] = seal(content, key=data_key, key_id=key_id, aad=record_id)
        body = canonical.dumps(full)
        return cls(
            record_id=record_id,
            key=record_key(record_id),
            header=full,
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
        )

    @classmethod
    def parse(cls, body: bytes) -> Record:
        try:
            header = json.loads(body)
            record_id = str(header["record_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"not a record: {exc}") from exc
        return cls(
            record_id=record_id,
            key=record_key(record_id),
            header=header,
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
        )

    def open(self, data_key: bytes) -> dict[str, Any]:
        return unseal(self.header["sealed"], key=data_key, aad=self.record_id)

    @property
    def key_id(self) -> str:
        return str(self.header["sealed"]["key_id"])


def flags_for(unknown_count: int, extra: Sequence[str] = ()) -> list[str]:
    flags = set(extra)
    if unknown_count:
        flags.add("unknown_fields")
    return sorted(flags)
