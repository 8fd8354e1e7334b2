"""Captures made by the archive itself, parsed into events (pure).

The send proxy (``POST /v1/messages``, ``docs/send-proxy.md``) archives two raw captures
through the same capture path as webhooks, told apart by their synthetic signature
header (``secret_index = -1``):

* ``proxy:request``  — before forwarding: ``{"v": 1, "kind": "request", "proxy_id",
  "phone_number_id", "payload", "payload_sha256", "actor"}``. It yields no event: the raw
  capture (and its log leaf) is the evidence that the business asked to send.
* ``proxy:response`` — after Meta answered: the same fields plus ``"request_sha256"``
  and ``"response": {"status", "body"}`` (Meta's JSON, success or error). It yields one
  ``api_send`` event per returned wamid with dedup key ``msg:<wamid>``, so the record id
  is ``pseudo.record_id(phone_number_id, "msg:" + wamid)`` and later statuses fold into
  it; a refused send yields one ``api_send`` event keyed ``send_failed:<proxy_id>``
  carrying Meta's error.

Send bodies follow the Cloud API "Messages" reference: ``to`` or ``recipient`` (BSUID),
``type`` and a ``<type>`` object; ``context.message_id`` for replies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import rfc8785

from archiver.whatsapp.events import (
    ContactRef,
    Direction,
    ErrorInfo,
    EventKind,
    MediaRef,
    MessageEvent,
    Origin,
    ParseResult,
    Problem,
)
from archiver.whatsapp.media import is_media_id

PROXY_PREFIX = "proxy:"
PROXY_REQUEST = "proxy:request"
PROXY_RESPONSE = "proxy:response"
_MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


def send_media_id_problem(payload: Mapping[str, Any]) -> str | None:
    """Why a send body's media id is refused, or None. Only ``<type>.id`` of a media type
    is checked (``link`` sends carry no id): Meta media ids are digits
    (``archiver.whatsapp.media.is_media_id``)."""
    message_type = payload.get("type")
    if message_type not in _MEDIA_TYPES:
        return None
    typed = payload.get(message_type)
    if not isinstance(typed, dict) or "id" not in typed:
        return None
    if is_media_id(typed["id"]):
        return None
    return f"{message_type}.id must be a Meta media id (decimal digits)"


def is_proxy_capture(signature_header: str) -> bool:
    return signature_header.startswith(PROXY_PREFIX)


def content_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical send body plus the direction (events.py's convention)."""
    return hashlib.sha256(
        rfc8785.dumps({"message": dict(payload), "direction": "outbound"})
    ).hexdigest()


def parse_outbound(body: bytes, signature_header: str, received_at: datetime) -> ParseResult:
    """Events of one proxy capture. Never raises: oddities become ``Problem``s."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ParseResult((), (Problem("proxy_unreadable", "", "capture is not JSON"),))
    if not isinstance(doc, dict):
        return ParseResult((), (Problem("proxy_unreadable", "", "capture is not an object"),))
    if signature_header == PROXY_REQUEST:
        return ParseResult((), ())
    if signature_header != PROXY_RESPONSE:
        return ParseResult(
            (), (Problem("proxy_unknown", "", f"unknown capture {signature_header!r}"),)
        )
    return ParseResult(tuple(_send_events(doc, received_at)), ())


def _send_events(doc: Mapping[str, Any], received_at: datetime) -> list[MessageEvent]:
    raw_payload = doc.get("payload")
    payload: Mapping[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
    response = doc.get("response") if isinstance(doc.get("response"), dict) else {}
    answer = response.get("body") if isinstance(response, dict) else None
    answer = answer if isinstance(answer, dict) else {}
    messages = [m for m in answer.get("messages") or [] if isinstance(m, dict)]
    contacts = [c for c in answer.get("contacts") or [] if isinstance(c, dict)]
    wamids = [str(m["id"]) for m in messages if isinstance(m.get("id"), str)]
    raw_type = payload.get("type")
    message_type = raw_type if isinstance(raw_type, str) else "text"
    typed = payload.get(message_type) if isinstance(payload.get(message_type), dict) else {}
    assert isinstance(typed, dict)
    texts = tuple(t for t in (typed.get("body"), typed.get("caption")) if isinstance(t, str) and t)
    media: tuple[MediaRef, ...] = ()
    if message_type in _MEDIA_TYPES and (typed.get("id") or typed.get("link")):
        media = (
            MediaRef(
                media_id=str(typed["id"]) if typed.get("id") else None,
                filename=typed.get("filename") if isinstance(typed.get("filename"), str) else None,
                url=typed.get("link") if isinstance(typed.get("link"), str) else None,
            ),
        )
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    assert isinstance(context, dict)
    common: dict[str, Any] = {
        "kind": EventKind.API_SEND,
        "field": "send_proxy",
        "waba_id": None,
        "phone_number_id": str(doc.get("phone_number_id") or "") or None,
        "display_phone_number": None,
        "content_hash": content_hash(payload),
        "occurred_at": received_at,
        "origin": Origin.BUSINESS_API,
        "direction": Direction.OUTBOUND,
        "message_type": message_type,
        "texts": texts,
        "media": media,
        "reply_to": context.get("message_id")
        if isinstance(context.get("message_id"), str)
        else None,
        "raw": {"payload": dict(payload), "response": dict(answer)},
    }
    if message_type == "reaction":
        common["reaction_to"] = typed.get("message_id")
        common["reaction_emoji"] = typed.get("emoji")
    if not wamids:
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        assert isinstance(error, dict)
        return [
            MessageEvent(
                **common,
                dedup_key=f"send_failed:{doc.get('proxy_id')}",
                contact=_contact(payload, None),
                errors=(
                    ErrorInfo(
                        code=error.get("code") if isinstance(error.get("code"), int) else None,
                        title=error.get("type") if isinstance(error.get("type"), str) else None,
                        message=error.get("message")
                        if isinstance(error.get("message"), str)
                        else None,
                    ),
                ),
            )
        ]
    return [
        MessageEvent(
            **common,
            dedup_key=f"msg:{wamid}",
            message_id=wamid,
            contact=_contact(payload, contacts[i] if i < len(contacts) else None),
        )
        for i, wamid in enumerate(wamids)
    ]


def _contact(payload: Mapping[str, Any], answered: Mapping[str, Any] | None) -> ContactRef | None:
    """Meta's normalised ``wa_id``/``user_id`` first; the request's otherwise.

    Only Meta may say that a phone number and a BSUID are one person: a request is the
    caller's word, so its fallback names one id only (``to``, else ``recipient``) and can
    never link two identities (``archiver.subjects.identity``)."""
    answered = answered or {}
    wa_id = answered.get("wa_id") if isinstance(answered.get("wa_id"), str) else None
    user_id = answered.get("user_id") if isinstance(answered.get("user_id"), str) else None
    if wa_id is None and user_id is None:
        to, recipient = payload.get("to"), payload.get("recipient")
        if isinstance(to, str) and to:
            return ContactRef(wa_id=to)
        if isinstance(recipient, str) and recipient:
            return ContactRef(user_id=recipient)
        return None
    return ContactRef(wa_id=wa_id, user_id=user_id)
