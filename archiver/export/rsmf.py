"""RSMF 2.0 (Relativity Short Message Format) events, manifests and envelopes (pure).

An ``.rsmf`` file is an RFC 5322 message with ``X-RSMF-Version: 2.0.0`` and exactly one
attachment, ``rsmf.zip``, base64-encoded, holding ``rsmf_manifest.json`` and the files it
names at the zip root. The manifest must validate against Relativity's published JSON
schema (``data/rsmf_schema_2_0_0.json``) with format checking on: every ``date-time``
carries its UTC offset. Each event carries its record id and record hash as non-empty
string custom fields, so a reviewer can tie it back to ``manifest.json``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from email.header import Header
from functools import cache
from importlib import resources
from typing import Any

from archiver.export.errors import ExportInputError
from archiver.export.model import ExportItem, Participant

VERSION = "2.0.0"
PLATFORM = "whatsapp"
MANIFEST_NAME = "rsmf_manifest.json"
ZIP_NAME = "rsmf.zip"
MAX_EVENTS = 10_000  # Relativity's advice per file
B64_CHUNK = 57 * 1024  # a multiple of 57 bytes: whole 76-character base64 lines


def local_time(t: datetime, tz: tzinfo) -> str:
    """ISO 8601 with the zone's offset (RFC 3339 ``date-time``: the schema checks it)."""
    return t.astimezone(tz).isoformat()


# Record kinds that are messages (archiver.indexing.documents.MESSAGE_KINDS): a reviewer
# sees a phone-app echo, a history-synced message or an API send as a message too.
_MESSAGE_KINDS = frozenset({"message", "echo", "history_message", "history_media", "api_send"})


def _custom(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    # The schema wants non-empty strings: an empty value is left out, never sent as "".
    return [{"name": n, "value": v} for n, v in pairs if v]


def event(
    item: ExportItem, tz: tzinfo, bates: str, attachment_files: Sequence[tuple[str, str, int]]
) -> dict[str, Any]:
    """The RSMF event of one record. ``attachment_files``: (file name in rsmf.zip, display
    name, size). An erased record becomes a tombstone event naming the erasure only."""
    ev: dict[str, Any] = {
        "id": item.record_id,
        "type": "message" if item.kind in _MESSAGE_KINDS else "unknown",
        "participant": item.sender.id,
        "conversation": item.conversation_id,
        "timestamp": local_time(item.timestamp, tz),
        "direction": "incoming" if item.direction == "inbound" else "outgoing",
    }
    custom = [
        ("record_id", item.record_id),
        ("record_hash", item.record_sha256),
        ("bates", bates),
        ("origin", item.origin),
        ("kind", item.kind),
    ]
    if item.erasure is not None:
        ev["body"] = item.erasure.describe()
        custom += [
            ("erased_at", local_time(item.erasure.erased_at, tz)),
            ("erasure_request", item.erasure.request_id),
        ]
        ev["custom"] = _custom(custom)
        return ev
    ev["body"] = item.text or ""
    if item.revoked:
        ev["deleted"] = True  # revoked by the sender; the archive kept it
    if item.edits:
        ev["edits"] = [
            {
                "participant": e.participant,
                "timestamp": local_time(e.timestamp, tz),
                "previous": e.previous,
                "new": e.new,
            }
            for e in item.edits
        ]
    if item.reactions:
        by_emoji: dict[str, list[str]] = {}
        for r in item.reactions:
            by_emoji.setdefault(r.emoji, []).append(r.participant)
        ev["reactions"] = [
            {"value": v, "count": len(ps), "participants": ps} for v, ps in by_emoji.items()
        ]
    if item.receipts:
        ev["read_receipts"] = [
            {"participant": r.participant, "action": r.action,
             "timestamp": local_time(r.timestamp, tz)}
            for r in item.receipts
        ]  # fmt: skip
    if attachment_files:
        ev["attachments"] = [
            {"id": f, "display": d, "size": s} for f, d, s in attachment_files
        ]
    ev["custom"] = _custom(custom)
    return ev


def manifest(
    events: Sequence[Mapping[str, Any]],
    participants: Mapping[str, Participant],
    conversation_id: str,
    conversation_display: str,
    collection_id: str,
    custodian: str | None,
) -> dict[str, Any]:
    """A slice's ``rsmf_manifest.json``: every participant its events name, one
    conversation, the events. Raises ExportInputError for an event naming an unknown
    participant."""
    named: list[str] = []
    for ev in events:
        ids = [ev.get("participant")]
        ids += [e["participant"] for e in ev.get("edits", ())]
        ids += [p for r in ev.get("reactions", ()) for p in r["participants"]]
        ids += [r["participant"] for r in ev.get("read_receipts", ())]
        for pid in ids:
            if pid is None:
                continue
            if pid not in participants:
                raise ExportInputError(f"event {ev.get('id')} names unknown participant {pid}")
            if pid not in named:
                named.append(pid)
    conv: dict[str, Any] = {
        "id": conversation_id,
        "display": conversation_display,
        "platform": PLATFORM,
        "type": "direct",
        "participants": named,
    }
    # ``custodian`` lists the case's custodians (", "): the first this conversation names.
    mine = [c for c in (custodian or "").split(", ") if c in named]
    if mine:
        conv["custodian"] = mine[0]
    return {
        "version": VERSION,
        "eventcollectionid": collection_id,
        "participants": [
            {"id": pid, "display": participants[pid].display or pid} for pid in named
        ],
        "conversations": [conv],
        "events": list(events),
    }


def collection_id(case_id: str, conversation_id: str) -> str:
    """Stable per (case, conversation): every slice of a conversation shares it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wa-archiver:{case_id}:{conversation_id}"))


@cache
def schema() -> dict[str, Any]:
    text = resources.files("archiver.export").joinpath("data/rsmf_schema_2_0_0.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validate(doc: Mapping[str, Any], schema_doc: Mapping[str, Any] | None = None) -> None:
    """Validate a manifest with format checking (``date-time`` needs rfc3339-validator).
    Raises ExportInputError naming the first problem."""
    import jsonschema

    validator = jsonschema.Draft7Validator(
        schema_doc or schema(), format_checker=jsonschema.FormatChecker()
    )
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise ExportInputError(f"RSMF manifest invalid at {where or '/'}: {first.message}")


def envelope_head(
    *, subject: str, day: str, events: int, collection: str, custodian: str, boundary: str,
    begin: str, end: str,
) -> bytes:
    """RFC 5322 headers and the MIME parts up to the base64 body of ``rsmf.zip``."""
    lines = [
        "From: wa-archiver export <export@wa-archiver.invalid>",
        "To: review <review@wa-archiver.invalid>",
        f"Date: {email.utils.format_datetime(datetime.fromisoformat(begin))}",
        f"Subject: {Header(subject, 'utf-8').encode()}",
        f"Message-ID: <{uuid.uuid5(uuid.NAMESPACE_URL, collection + day + subject)}@wa-archiver>",
        "MIME-Version: 1.0",
        f"X-RSMF-Version: {VERSION}",
        "X-RSMF-Generator: wa-archiver",
        f"X-RSMF-EventCount: {events}",
        f"X-RSMF-EventCollectionID: {collection}",
        f"X-RSMF-BeginDate: {begin}",
        f"X-RSMF-EndDate: {end}",
        f"X-RSMF-Custodian: {Header(custodian or 'unknown', 'utf-8').encode()}",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        f"RSMF {VERSION} short-message file: {events} WhatsApp events of {day}.",
        "Load it in a review platform; the conversation is in the attached rsmf.zip.",
        f"--{boundary}",
        f'Content-Type: application/zip; name="{ZIP_NAME}"',
        f'Content-Disposition: attachment; filename="{ZIP_NAME}"',
        "Content-Transfer-Encoding: base64",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def envelope_tail(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def b64_lines(chunk: bytes) -> bytes:
    """Base64 of a chunk whose length is a multiple of 57 (or the last chunk) as CRLF
    lines of 76 characters."""
    enc = base64.b64encode(chunk)
    return b"\r\n".join(enc[i : i + 76] for i in range(0, len(enc), 76))
