"""Index documents from records (pure): what a compliance officer can search and read.

A message-like record (message, echo, history message, API send) becomes one document
whose id is the record id (fields: ``search.mapping.MESSAGE_MAPPING``). Records *about*
a message fold into that message's document:

* statuses: latest ``status`` and the first time of every status (``status_times``);
* edits: ``edited``, ``edited_at`` and ``edits`` (each new text beside the original,
  which stays in ``text``);
* revokes: ``revoked``, ``revoked_at``; the original text stays (the API decides who
  may read it);
* reactions: ``reactions`` (an empty emoji is a removal, kept as evidence);
* contact sync: the business's own name for the contact (``contact_name``); a
  ``remove`` clears it (``contact_name`` falls back to the profile name);
* history media: the later media delivery of a history placeholder (same wamid) folds
  into the placeholder's document (media fields, caption, ``sources`` = both records),
  so the conversation shows one message.

Every other event kind (``EVENT_KINDS``: statuses, calls, preferences, account and
template updates, history chunks and errors, contact sync, webhook errors, unknown
payloads) is also a document of its own (``event_document``), so an officer finds it by
``kind:``/``type:``, its own name (``event:approved``), Meta's error codes
(``error:131049``), a status's pricing category (``pricing:marketing``) or free text.
It carries the subject pseudonym like a message, so erasure reaches it.

The folding target of an event about wamid W of business B is the record id of
``msg:W`` — computable from the event alone, so folding works in any order of arrival.
Every fold is idempotent (keyed by the record that makes it), so replaying a range of
the log changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archiver.whatsapp.events import EventKind

MESSAGE_KINDS = frozenset({"message", "echo", "history_message", "history_media", "api_send"})
# ``unprocessable`` is a record kind of the processor's, not an event Meta sends: a delivery
# (or one event of it) kept only raw. An officer must find those too (``kind:unprocessable``,
# ``event:<reason>``), from the clear header alone.
UNPROCESSABLE = "unprocessable"
EVENT_KINDS = (frozenset(k.value for k in EventKind) - MESSAGE_KINDS) | {UNPROCESSABLE}
# What a conversation's thread lists: messages, and calls (communications too).
THREAD_KINDS = frozenset({*MESSAGE_KINDS, EventKind.CALL.value})
# Admin events: their attributes are Meta's words about the account or template.
_ADMIN_KINDS = frozenset({"account_update", "template_update", "phone_number_update",
                          "business_update"})  # fmt: skip
_MAX_EVENT_TEXTS = 500
# Message types that are really about another message: shown folded into it in threads.
FOLDED_TYPES = ("edit", "revoke", "reaction")

STATUS_ORDER = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5, "deleted": 6}


@dataclass(frozen=True, slots=True)
class Fold:
    """An update to another document: ``target`` id, ``op`` and its data."""

    target: str
    op: str  # status | edit | revoke | reaction | contact_name | history_media
    data: Mapping[str, Any]


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _texts(event: Mapping[str, Any]) -> str:
    # The parser already gathers every searchable text: body, caption, file name,
    # interactive titles and replies, location name/address, shared contact cards.
    return "\n".join(t for t in event.get("texts") or [] if isinstance(t, str) and t)


def message_document(
    header: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    leaf_index: int | None,
    *,
    consent: str | None = None,
    known_name: str | None = None,
) -> dict[str, Any]:
    """The document of a message-like record. ``event`` is None when its key is shredded
    (only the non-personal header is indexed then). ``consent`` is the subject's consent
    state when this record entered the log; ``known_name`` the contact-sync name."""
    business = header.get("business") or {}
    refs = header.get("refs") or {}
    policy = header.get("policy") or {}
    doc: dict[str, Any] = {
        "id": header["record_id"],
        "record_id": header["record_id"],
        "kind": header["kind"],
        # phone_number_id is the number's identity (scopes, holds, ``number:``); the
        # display number is an attribute that can change (``display_number:``).
        "phone_number_id": business.get("phone_number_id"),
        "business_number": business.get("display_phone_number"),
        "direction": header.get("direction"),
        "origin": header.get("origin"),
        "type": header.get("message_type"),
        "ts": header.get("occurred_at") or header.get("captured_at"),
        "captured_at": header.get("captured_at"),
        "policy": policy.get("id"),
        "retain_until": policy.get("retain_until"),
        "conversation": header.get("conversation"),
        "subject": header.get("subject"),
        "message_ref": header.get("message_ref"),
        "reply_to": refs.get("reply_to"),
        "target_ref": refs.get("edit_of") or refs.get("revoke_of") or refs.get("reaction_to"),
        "consent": consent,
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
            "text": _texts(event),
            "contact": contact.get("wa_id"),
            "contact_user_id": contact.get("user_id"),
            "contact_username": contact.get("username"),
            "contact_profile_name": contact.get("name"),
            "contact_name": known_name or contact.get("name"),
            "media_mime": media.get("mime_type"),
            "media_sha256": media.get("sha256"),
            "media_size": media.get("file_size") or media.get("size"),
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


def _scalars(value: Any, out: list[str]) -> None:
    """Every string and number leaf of a JSON value (bounded: a hostile body stays small)."""
    if len(out) >= _MAX_EVENT_TEXTS or isinstance(value, bool) or value is None:
        return
    if isinstance(value, str | int | float):
        out.append(str(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            _scalars(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _scalars(item, out)


def _event_name(kind: str, event: Mapping[str, Any]) -> Any:
    if kind in _ADMIN_KINDS:
        return event.get("event")
    return {
        "call": event.get("call_event"),
        "user_preference": event.get("value"),
        "contact_sync": event.get("action"),
    }.get(kind)


def _event_texts(kind: str, event: Mapping[str, Any]) -> list[str]:
    """What an officer may type to find the event: its name, status, Meta's error codes
    and words, pricing, and every value of an admin event's attributes."""
    out: list[str] = []
    _scalars(event.get("texts"), out)
    _scalars([_event_name(kind, event), event.get("status"), event.get("call_direction"),
              event.get("category"), event.get("callback_data")], out)  # fmt: skip
    for error in event.get("errors") or []:
        if isinstance(error, Mapping):
            _scalars([error.get(k) for k in ("code", "title", "message", "details")], out)
    _scalars(event.get("pricing"), out)
    _scalars((event.get("conversation") or {}).get("origin"), out)
    if kind in _ADMIN_KINDS:
        _scalars(event.get("attributes"), out)
    if kind == "unknown":
        _scalars(event.get("raw"), out)
    seen: dict[str, None] = {}
    for text in out:
        if text.strip():
            seen.setdefault(text, None)
    return list(seen)


def event_document(
    header: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    leaf_index: int | None,
    *,
    consent: str | None = None,
    known_name: str | None = None,
) -> dict[str, Any]:
    """The document of any other event kind (``EVENT_KINDS``): the message fields that
    apply (business, contact, conversation, subject, times, policy), ``type`` = the kind,
    and ``event``, ``status``, ``error_codes``, ``pricing_category`` and ``text`` from the
    event. Without ``event`` (shredded) only the clear header is indexed."""
    doc = message_document(header, event, leaf_index, consent=consent, known_name=known_name)
    for name in ("edited", "revoked", "media_mime", "media_sha256", "media_size"):
        doc.pop(name, None)
    kind = str(header["kind"])
    doc["type"] = kind
    if header.get("status"):
        doc["status"] = str(header["status"]).lower()
    if kind == UNPROCESSABLE:
        # The sealed detail may quote the hostile input: only the clear reason is indexed.
        reason = (header.get("unprocessable") or {}).get("reason")
        doc["event"] = str(reason).lower() if reason else None
        return {k: v for k, v in doc.items() if v is not None}
    if event is None:
        return doc
    name = _event_name(kind, event)
    status = event.get("status")
    pricing: Mapping[str, Any] = event.get("pricing") or {}
    codes = [
        str(e["code"]) for e in event.get("errors") or []
        if isinstance(e, Mapping) and e.get("code") is not None
    ]  # fmt: skip
    extra = {
        "event": str(name).lower() if name else None,
        "status": str(status).lower() if status else doc.get("status"),
        "error_codes": codes or None,
        "pricing_category": str(pricing["category"]).lower() if pricing.get("category") else None,
        "text": "\n".join(_event_texts(kind, event)),
    }
    if kind == "contact_sync" and event.get("full_name"):
        extra["contact_name"] = event["full_name"]  # the name this event gave
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc


def history_media_fold(
    header: Mapping[str, Any], event: Mapping[str, Any] | None, target_of: Callable[[str], str]
) -> Fold | None:
    """The fold of a history media delivery into its placeholder's document (same wamid)."""
    if event is None or header.get("kind") != "history_media" or not event.get("message_id"):
        return None
    media = _first(event.get("media")) or {}
    data = {
        "record_id": header["record_id"],
        "at": event.get("occurred_at") or header.get("captured_at"),
        "type": header.get("message_type"),
        "text": _texts(event),
        "media_mime": media.get("mime_type"),
        "media_sha256": media.get("sha256"),
        "media_size": media.get("file_size") or media.get("size"),
    }
    return Fold(
        target_of(event["message_id"]),
        "history_media",
        {k: v for k, v in data.items() if v is not None},
    )


def folds_for(
    header: Mapping[str, Any], event: Mapping[str, Any] | None, target_of: Callable[[str], str]
) -> list[Fold]:
    """Updates this record makes to other documents. ``target_of(wamid)`` gives the id."""
    if event is None:
        return []
    kind = header["kind"]
    at = event.get("occurred_at") or header.get("captured_at")
    record_id = header["record_id"]
    folds: list[Fold] = []
    if kind == "status" and event.get("message_id"):
        status = str(event.get("status") or "").lower()
        if status:
            folds.append(
                Fold(
                    target_of(event["message_id"]),
                    "status",
                    {"status": status, "at": at, "record_id": record_id},
                )
            )
    if event.get("edit_of"):
        folds.append(
            Fold(
                target_of(event["edit_of"]),
                "edit",
                {"record_id": record_id, "at": at, "text": _texts(event)},
            )
        )
    if event.get("revoke_of"):
        folds.append(
            Fold(target_of(event["revoke_of"]), "revoke", {"record_id": record_id, "at": at})
        )
    if event.get("reaction_to"):
        folds.append(
            Fold(
                target_of(event["reaction_to"]),
                "reaction",
                {
                    "record_id": record_id,
                    "at": at,
                    "emoji": event.get("reaction_emoji") or "",
                    "direction": header.get("direction"),
                },
            )
        )
    return folds


def _merge_by_record(items: Any, item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Add ``item`` to a list unless a member with its record id is there; sort by time."""
    out = [dict(i) for i in items or [] if i.get("record_id") != item.get("record_id")]
    out.append(dict(item))
    out.sort(key=lambda i: (str(i.get("at") or ""), str(i.get("record_id"))))
    return out


def apply_fold(doc: dict[str, Any], fold: Fold) -> dict[str, Any]:
    """Return ``doc`` with the fold applied (idempotent: applying twice changes nothing)."""
    out = dict(doc)
    data = fold.data
    if fold.op == "status":
        times = dict(out.get("status_times") or {})
        status = str(data.get("status"))
        at = data.get("at")
        if status and (status not in times or (at and str(at) < str(times[status]))):
            times[status] = at
        out["status_times"] = times
        out["status"] = max(times, key=lambda s: (STATUS_ORDER.get(s, 0), str(times[s])))
    elif fold.op == "edit":
        out["edits"] = _merge_by_record(out.get("edits"), data)
        out["edited"] = True
        out["edited_at"] = out["edits"][-1].get("at") or out.get("edited_at")
    elif fold.op == "revoke":
        out["revoked"] = True
        if data.get("at") and (not out.get("revoked_at") or str(data["at"]) < out["revoked_at"]):
            out["revoked_at"] = data["at"]
    elif fold.op == "reaction":
        out["reactions"] = _merge_by_record(out.get("reactions"), data)
    elif fold.op == "contact_name":
        # A contact-sync remove (``name`` None) clears the business's name: what the
        # customer's own profile says stays.
        out["contact_name"] = data.get("name") or out.get("contact_profile_name")
    elif fold.op == "history_media":
        out = _fold_history_media(out, data)
    return {k: v for k, v in out.items() if v is not None}


def _fold_history_media(doc: dict[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The placeholder learns its media: type, media fields, caption; both records are
    its ``sources``. Idempotent."""
    own = doc.get("record_id")
    doc["sources"] = sorted({*(doc.get("sources") or ([own] if own else [])), data["record_id"]})
    if data.get("type") and doc.get("type") in (None, "media_placeholder"):
        doc["type"] = data["type"]
    for name in ("media_mime", "media_sha256", "media_size"):
        if data.get(name) is not None and doc.get(name) is None:
            doc[name] = data[name]
    text = data.get("text")
    if text and text not in (doc.get("text") or "").split("\n"):
        doc["text"] = "\n".join(t for t in (doc.get("text"), text) if t)
    return doc


def current_reactions(reactions: Any) -> list[dict[str, Any]]:
    """The reactions standing now: the latest per reacting side, removals dropped."""
    latest: dict[str, dict[str, Any]] = {}
    for item in reactions or []:
        latest[str(item.get("direction"))] = dict(item)
    return [r for r in latest.values() if r.get("emoji")]
