"""The other per-kind webhook item parsers: statuses, calls, contact sync, user
preferences, and account/template/phone-number/business updates (pure).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from archiver.whatsapp.change import Change, finish, simple, unknown_item
from archiver.whatsapp.events import (
    AdminEvent,
    CallEvent,
    ContactRef,
    ContactSyncEvent,
    Direction,
    Event,
    EventKind,
    Origin,
    StatusEvent,
    UserPreferenceEvent,
)
from archiver.whatsapp.pointers import Take, esc, leaves

_ADMIN_KEYS: dict[EventKind, frozenset[str]] = {
    EventKind.ACCOUNT_UPDATE: frozenset(
        {
            "event",
            "phone_number",
            "waba_info",
            "disconnection_info",
            "violation_info",
            "ban_info",
            "country",
            "restriction_info",
            "partner_client_certification_info",
            "volume_tier_info",
            "auth_international_rate_eligibility",
            "lock_info",
        }
    ),
    EventKind.TEMPLATE_UPDATE: frozenset(
        {
            "event",
            "message_template_id",
            "message_template_name",
            "message_template_language",
            "reason",
            "message_template_category",
            "previous_category",
            "new_category",
            "correct_category",
            "category_update_timestamp",
            "previous_quality_score",
            "new_quality_score",
            "rejection_info",
            "message_template_title",
            "message_template_element",
            "message_template_footer",
            "message_template_buttons",
            "other_info",
        }
    ),
    EventKind.PHONE_NUMBER_UPDATE: frozenset(
        {
            "event",
            "decision",
            "requested_verified_name",
            "rejection_reason",
            "current_limit",
            "old_limit",
            "new_limit",
            "max_daily_conversation_per_phone",
        }
    ),
    EventKind.BUSINESS_UPDATE: frozenset(
        {
            "event",
            "decision",
            "max_daily_conversations_per_business",
            "max_phone_numbers_per_waba",
            "max_phone_numbers_per_business",
            "configuration_name",
            "provider_name",
            "provider_mid",
            "status",
            "created_timestamp",
            "updated_timestamp",
            "requester",
            "solution_id",
            "solution_status",
            "entity_type",
            "entity_id",
            "alert_info",
            "username",
        }
    ),
}
_ADMIN_TEXT_KEYS = (
    "message_template_title",
    "message_template_element",
    "message_template_footer",
    "requested_verified_name",
)


def parse_status(ch: Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return unknown_item(ch, ptr, obj, "status item without a string id")
    t = Take()
    sid = t.string(obj, ptr, "id")
    status = t.string(obj, ptr, "status")
    rtype = t.string(obj, ptr, "recipient_type")
    rid = t.string(obj, ptr, "recipient_id")
    ruid = t.string(obj, ptr, "recipient_user_id")
    rpar = t.string(obj, ptr, "parent_recipient_user_id") or t.string(obj, ptr, "parent_user_id")
    group_id = None
    if rtype == "group":
        group_id = rid
        own = ContactRef(
            t.string(obj, ptr, "recipient_participant_id"),
            t.string(obj, ptr, "recipient_participant_user_id"),
            t.string(obj, ptr, "recipient_participant_parent_user_id"),
        )
    else:
        own = ContactRef(rid, ruid, rpar)
    contact = ch.resolve(t, own, ptr)
    common: dict[str, Any] = {
        "occurred_at": t.time(obj, ptr, "timestamp"),
        "errors": t.errors(obj, ptr),
        "callback_data": t.string(obj, ptr, "biz_opaque_callback_data"),
        "contact": None if contact.is_empty else contact,
        "group_id": group_id,
    }
    if obj.get("type") == "call" or ch.field == "calls":
        t.string(obj, ptr, "type")
        return finish(
            CallEvent,
            ch,
            t,
            ptr=ptr,
            raw=obj,
            kind=EventKind.CALL,
            dedup_key=f"call:{sid}:status:{(status or '').lower()}",
            content=obj,
            origin=Origin.META,
            direction=Direction.NONE,
            call_id=sid,
            call_event="status",
            status=status,
            **common,
        )
    participant = own.wa_id or own.user_id if rtype == "group" else None
    key = f"status:{sid}:{status}" + (f":{participant}" if participant else "")
    return finish(
        StatusEvent,
        ch,
        t,
        ptr=ptr,
        raw=obj,
        kind=EventKind.STATUS,
        dedup_key=key,
        content=obj,
        origin=Origin.META,
        direction=Direction.OUTBOUND,
        message_id=sid,
        status=status,
        recipient_type=rtype,
        conversation=t.tree(obj, ptr, "conversation"),
        pricing=t.tree(obj, ptr, "pricing"),
        **common,
    )


def parse_call(ch: Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return unknown_item(ch, ptr, obj, "call item without a string id")
    t = Take()
    cid, event = t.string(obj, ptr, "id"), t.string(obj, ptr, "event")
    frm, to = t.string(obj, ptr, "from"), t.string(obj, ptr, "to")
    cdir = t.string(obj, ptr, "direction")
    # Meta's explicit direction wins; the display number only picks the customer's side.
    if cdir in ("BUSINESS_INITIATED", "USER_INITIATED"):
        outbound = cdir == "BUSINESS_INITIATED"
    else:
        outbound = ch.is_business(frm) and not ch.is_business(to)
    direction = Direction.OUTBOUND if outbound else Direction.INBOUND
    if ch.is_business(to) != ch.is_business(frm):
        customer = frm if ch.is_business(to) else to
    else:
        customer = to if outbound else frm
    contact = ch.resolve(t, ContactRef(customer), ptr)
    origin = Origin.CUSTOMER if direction is Direction.INBOUND else Origin.BUSINESS_API
    return finish(
        CallEvent,
        ch,
        t,
        ptr=ptr,
        raw=obj,
        kind=EventKind.CALL,
        dedup_key=f"call:{cid}:{event}",
        content=obj,
        origin=origin,
        direction=direction,
        contact=contact,
        call_id=cid,
        call_event=event,
        call_direction=cdir,
        status=t.string(obj, ptr, "status"),
        duration=t.integer(obj, ptr, "duration"),
        started_at=t.time(obj, ptr, "start_time"),
        ended_at=t.time(obj, ptr, "end_time"),
        occurred_at=t.time(obj, ptr, "timestamp"),
        errors=t.errors(obj, ptr),
        callback_data=t.string(obj, ptr, "biz_opaque_callback_data"),
    )


def parse_state_sync(ch: Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict):
        return unknown_item(ch, ptr, obj, "state_sync item is not an object")
    t = Take()
    c, cp = obj.get("contact"), f"{ptr}/contact"
    full, first = t.string(c, cp, "full_name"), t.string(c, cp, "first_name")
    own = ContactRef(
        t.string(c, cp, "phone_number"),
        t.string(c, cp, "user_id"),
        t.string(c, cp, "parent_user_id"),
        t.string(c, cp, "username"),
        full,
    )
    meta = obj.get("metadata")
    return simple(
        ContactSyncEvent,
        EventKind.CONTACT_SYNC,
        ch,
        ptr,
        obj,
        t,
        origin=Origin.BUSINESS_APP,
        contact=ch.resolve(t, own, ptr),
        occurred_at=t.time(meta, f"{ptr}/metadata", "timestamp"),
        texts=tuple(s for s in (full, first) if s),
        action=t.string(obj, ptr, "action"),
        sync_type=t.string(obj, ptr, "type"),
        full_name=full,
        first_name=first,
    )


def parse_preference(ch: Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict):
        return unknown_item(ch, ptr, obj, "user_preferences item is not an object")
    t = Take()
    own = ContactRef(
        t.string(obj, ptr, "wa_id"),
        t.string(obj, ptr, "user_id"),
        t.string(obj, ptr, "parent_user_id"),
    )
    detail = t.string(obj, ptr, "detail")
    return simple(
        UserPreferenceEvent,
        EventKind.USER_PREFERENCE,
        ch,
        ptr,
        obj,
        t,
        origin=Origin.CUSTOMER,
        contact=ch.resolve(t, own, ptr),
        occurred_at=t.time(obj, ptr, "timestamp"),
        texts=(detail,) if detail else (),
        category=t.string(obj, ptr, "category"),
        value=t.string(obj, ptr, "value"),
        detail=detail,
        signup_id=t.string(obj, ptr, "signup_id"),
    )


def parse_admin(kind: EventKind, ch: Change, ptr: str, obj: dict[str, Any]) -> Event:
    t = Take()
    attrs = {k: obj[k] for k in sorted(_ADMIN_KEYS[kind] & obj.keys())}
    t.consumed.update(f"{ptr}/{esc(k)}" for k in attrs)
    event = attrs.get("event") or attrs.get("decision")
    texts = [attrs[k] for k in _ADMIN_TEXT_KEYS if isinstance(attrs.get(k), str)]
    texts += [
        s
        for k, s in leaves(obj.get("message_template_buttons"))
        if isinstance(s, str) and k.endswith("_text")
    ]
    alert = obj.get("alert_info")
    if isinstance(alert, dict) and isinstance(alert.get("alert_description"), str):
        texts.append(alert["alert_description"])
    display = t.string(obj, ptr, "display_phone_number")
    if kind is EventKind.ACCOUNT_UPDATE and event == "PARTNER_REMOVED":
        display = display or (
            attrs.get("phone_number") if isinstance(attrs.get("phone_number"), str) else None
        )
    return simple(
        AdminEvent,
        kind,
        ch,
        ptr,
        obj,
        t,
        origin=Origin.META,
        occurred_at=ch.entry_time,
        texts=tuple(texts),
        event=event if isinstance(event, str) else None,
        attributes=MappingProxyType(attrs),
        display_phone_number=display,
    )


__all__ = [
    "parse_admin",
    "parse_call",
    "parse_preference",
    "parse_state_sync",
    "parse_status",
]
