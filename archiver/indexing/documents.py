"""Index documents from records (pure): what a compliance officer can search and read.

A message-like record (message, echo, history message, API send) becomes one document
whose id is the record id. Records *about* a message fold into that message's document:
statuses (latest status and every status time), edits (``edited`` and the new text
beside the original), revokes (``revoked``; the original text stays, readable to roles
allowed to see it), reactions. The folding target of an event about wamid W of business
B is the record id of ``msg:W`` — computable from the event alone, so folding works in
any order of arrival.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MESSAGE_KINDS = frozenset({"message", "echo", "history_message", "history_media", "api_send"})

STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5, "deleted": 6}


@dataclass(frozen=True, slots=True)
class Fold:
    """An update to another document: ``target`` id, ``op`` and its data."""

    target: str
    op: str  # status | edit | revoke | reaction | media
    data: Mapping[str, Any]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def message_document(
    header: Mapping[str, Any], event: Mapping[str, Any] | None, leaf_index: int | None
) -> dict[str, Any]:
    """The document of a message-like record. ``event`` is None when its key is shredded."""
    business = header.get("business") or {}
    doc: dict[str, Any] = {
        "id": header["record_id"],
        "record_id": header["record_id"],
        "kind": header["kind"],
        "business_number": business.get("display_phone_number"),
        "phone_number_id": business.get("phone_number_id"),
        "direction": header.get("direction"),
        "origin": header.get("origin"),
        "type": header.get("message_type"),
        "ts": header.get("occurred_at") or header.get("captured_at"),
        "captured_at": header.get("captured_at"),
        "policy": (header.get("policy") or {}).get("id"),
        "retain_until": (header.get("policy") or {}).get("retain_until"),
        "conversation": header.get("conversation"),
        "leaf_index": leaf_index,
        "edited": False,
        "revoked": False,
    }
    if event is None:
        return {k: v for k, v in doc.items() if v is not None}
    contact = event.get("contact") or {}
    media = _first(event.get("media")) or {}
    doc.update(
        {
            "text": "\n".join(t for t in event.get("texts") or [] if isinstance(t, str)),
            "contact": contact.get("wa_id"),
            "contact_user_id": contact.get("user_id"),
            "contact_username": contact.get("username"),
            "contact_name": contact.get("name"),
            "media_mime": media.get("mime_type"),
            "media_sha256": media.get("sha256"),
        }
    )
    customer = contact.get("wa_id") or contact.get("user_id")
    ours = business.get("display_phone_number")
    if header.get("direction") == "inbound":
        doc["from"], doc["to"] = customer, ours
    elif header.get("direction") == "outbound":
        doc["from"], doc["to"] = ours, customer
    if event.get("history_status"):
        doc["status"] = str(event["history_status"]).lower()
    return {k: v for k, v in doc.items() if v is not None}


def folds_for(
    header: Mapping[str, Any], event: Mapping[str, Any] | None, target_of: Any
) -> list[Fold]:
    """Updates this record makes to other documents. ``target_of(wamid)`` gives the id."""
    if event is None:
        return []
    kind = header["kind"]
    folds: list[Fold] = []
    if kind == "status" and event.get("message_id"):
        folds.append(
            Fold(
                target_of(event["message_id"]),
                "status",
                {
                    "status": str(event.get("status") or "").lower(),
                    "at": event.get("occurred_at") or header.get("captured_at"),
                    "record_id": header["record_id"],
                },
            )
        )
    if event.get("edit_of"):
        folds.append(
            Fold(
                target_of(event["edit_of"]),
                "edit",
                {"record_id": header["record_id"], "at": event.get("occurred_at")},
            )
        )
    if event.get("revoke_of"):
        folds.append(
            Fold(
                target_of(event["revoke_of"]),
                "revoke",
                {"record_id": header["record_id"], "at": event.get("occurred_at")},
            )
        )
    if event.get("reaction_to"):
        folds.append(
            Fold(
                target_of(event["reaction_to"]),
                "reaction",
                {"record_id": header["record_id"], "emoji": event.get("reaction_emoji")},
            )
        )
    return folds


def apply_fold(doc: dict[str, Any], fold: Fold) -> dict[str, Any]:
    """Return ``doc`` with the fold applied (idempotent: applying twice changes nothing)."""
    out = dict(doc)
    if fold.op == "status":
        times = dict(out.get("status_times") or {})
        status = str(fold.data.get("status"))
        at = fold.data.get("at")
        if status and (status not in times or (at and str(at) < str(times[status]))):
            times[status] = at
        out["status_times"] = times
        latest = max(times, key=lambda s: (STATUS_ORDER.get(s, 0), str(times[s])))
        out["status"] = latest
    elif fold.op == "edit":
        out["edited"] = True
    elif fold.op == "revoke":
        out["revoked"] = True
    return out
