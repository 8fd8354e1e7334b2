"""The raw-capture container: several webhook deliveries in one evidence object.

Group commit writes every delivery that arrives within a few milliseconds as one
object, so one durable PUT answers many webhooks. Each delivery is encrypted under
its own AES-256-GCM *capture key* (see ``docs/keys.md``): a delivery can mention
several data subjects, and erasing any of them destroys that delivery's key.

Layout (``docs/formats.md``)::

    b"WARAW1\\n" | u32 big-endian header length | header (RFC 8785 JSON) | payloads

The header lists, per delivery, its byte range in the payload area, the SHA-256 and
size of the *plaintext* body exactly as Meta sent it, the signature header, the
receipt time and the nonce. The AAD of each payload binds it to its batch and slot.
Pure code: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from archiver.errors import ArchiverError
from archiver.records import canonical

MAGIC = b"WARAW1\n"
_LEN = struct.Struct(">I")


class RawBatchError(ArchiverError):
    code = "raw_batch_invalid"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One authentic webhook POST, as received."""

    body: bytes
    received_at: str  # ISO 8601 UTC
    signature_header: str
    secret_index: int
    content_type: str | None


@dataclass(frozen=True, slots=True)
class SlotInfo:
    index: int
    received_at: str
    signature_header: str
    secret_index: int
    content_type: str | None
    sha256: str  # of the plaintext body
    size: int
    offset: int
    length: int
    nonce: bytes


def _aad(batch_id: str, index: int) -> bytes:
    return f"wa-raw/{batch_id}/{index}".encode()


def seal_batch(
    batch_id: str, deliveries: Sequence[Delivery], keys: Sequence[bytes]
) -> tuple[bytes, list[SlotInfo]]:
    """Encrypt each delivery under its own key and frame them; return (bytes, slots)."""
    if len(deliveries) != len(keys):
        raise ValueError("one key per delivery")
    payloads: list[bytes] = []
    slots: list[SlotInfo] = []
    offset = 0
    for index, (delivery, key) in enumerate(zip(deliveries, keys, strict=True)):
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, delivery.body, _aad(batch_id, index))
        slots.append(
            SlotInfo(
                index=index,
                received_at=delivery.received_at,
                signature_header=delivery.signature_header,
                secret_index=delivery.secret_index,
                content_type=delivery.content_type,
                sha256=hashlib.sha256(delivery.body).hexdigest(),
                size=len(delivery.body),
                offset=offset,
                length=len(sealed),
                nonce=nonce,
            )
        )
        payloads.append(sealed)
        offset += len(sealed)
    header: dict[str, Any] = {
        "v": 1,
        "batch_id": batch_id,
        "deliveries": [
            {
                "i": s.index,
                "received_at": s.received_at,
                "signature": s.signature_header,
                "secret_index": s.secret_index,
                "content_type": s.content_type,
                "sha256": s.sha256,
                "size": s.size,
                "offset": s.offset,
                "length": s.length,
                "nonce": base64.b64encode(s.nonce).decode(),
            }
            for s in slots
        ],
    }
    header_bytes = canonical.dumps(header)
    return MAGIC + _LEN.pack(len(header_bytes)) + header_bytes + b"".join(payloads), slots


@dataclass(frozen=True, slots=True)
class OpenedBatch:
    batch_id: str
    slots: tuple[SlotInfo, ...]
    payload_area: bytes

    def open(self, index: int, key: bytes) -> bytes:
        """Decrypt one delivery and check its plaintext hash; raise RawBatchError."""
        slot = self.slots[index]
        sealed = self.payload_area[slot.offset : slot.offset + slot.length]
        try:
            body = AESGCM(key).decrypt(slot.nonce, sealed, _aad(self.batch_id, index))
        except InvalidTag as exc:
            raise RawBatchError(
                f"delivery {index} of {self.batch_id} fails authentication"
            ) from exc
        if hashlib.sha256(body).hexdigest() != slot.sha256:
            raise RawBatchError(f"delivery {index} of {self.batch_id} has the wrong hash")
        return body


def parse_batch(data: bytes) -> OpenedBatch:
    """Parse the container framing and header (no decryption). Raise RawBatchError."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _LEN.size:
        raise RawBatchError("not a raw capture batch")
    (length,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    try:
        import json

        header = json.loads(data[start : start + length])
        slots = tuple(
            SlotInfo(
                index=int(d["i"]),
                received_at=str(d["received_at"]),
                signature_header=str(d["signature"]),
                secret_index=int(d["secret_index"]),
                content_type=d.get("content_type"),
                sha256=str(d["sha256"]),
                size=int(d["size"]),
                offset=int(d["offset"]),
                length=int(d["length"]),
                nonce=base64.b64decode(d["nonce"]),
            )
            for d in header["deliveries"]
        )
        batch_id = str(header["batch_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RawBatchError(f"raw batch header unreadable: {exc}") from exc
    return OpenedBatch(batch_id=batch_id, slots=slots, payload_area=data[start + length :])
