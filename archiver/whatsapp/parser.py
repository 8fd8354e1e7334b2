"""WhatsApp Cloud API webhook body → typed events (pure; never raises).

Envelope (Meta "Webhooks overview"): ``{"object": "whatsapp_business_account", "entry":
[{"id": <WABA id>, "time"?, "changes": [{"field", "value"}]}]}``. Each item of the
value's arrays becomes one event; a bad item becomes an ``unknown`` event and the others
still parse. Every leaf of the body ends up either consumed by a typed field (its JSON
pointer, or an ancestor's, is in some event's ``consumed``) or in some event's
``unknown`` — the parser tracks pointers instead of guessing.

Decisions (fixtures README §4–§7):

* Echo ``from``/``to``: Meta documents from = business, to = customer. pywa's edit/revoke
  echo fixtures have them swapped, so the business side is whichever equals
  ``metadata.display_phone_number`` (digits only); a swap is recorded as a Problem.
* History messages: the thread id (and BSUID-era ``thread.context``) is the customer;
  ``from`` equal to the display number (or no ``from_user_id`` and ``from`` ≠ thread id)
  means business-sent (outbound).
* ``history_declined.value_only.json``-like bodies (no envelope) become one ``unknown``
  event. Misplaced ``field``/``object`` (Meta's as-published partner_app examples) are
  recovered and reported as Problems.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import rfc8785

from archiver.whatsapp.events import (
    AdminEvent,
    CallEvent,
    ContactRef,
    ContactSyncEvent,
    Direction,
    ErrorInfo,
    Event,
    EventKind,
    HistoryChunkEvent,
    Location,
    MediaRef,
    MessageEvent,
    Origin,
    ParseResult,
    Problem,
    StatusEvent,
    UserPreferenceEvent,
)

_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
_TEMPLATE_FIELDS = {
    "message_template_status_update", "message_template_quality_update",
    "message_template_components_update", "template_category_update",
}
_PHONE_FIELDS = {"phone_number_name_update", "phone_number_quality_update"}
_BUSINESS_FIELDS = {
    "business_capability_update", "payment_configuration_update", "security",
    "partner_solutions", "account_alerts", "account_review_update", "business_status_update",
    "business_username_update",
}
_ADMIN_KEYS: dict[EventKind, frozenset[str]] = {
    EventKind.ACCOUNT_UPDATE: frozenset({
        "event", "phone_number", "waba_info", "disconnection_info", "violation_info", "ban_info",
        "country", "restriction_info", "partner_client_certification_info", "volume_tier_info",
        "auth_international_rate_eligibility", "lock_info",
    }),
    EventKind.TEMPLATE_UPDATE: frozenset({
        "event", "message_template_id", "message_template_name", "message_template_language",
        "reason", "message_template_category", "previous_category", "new_category",
        "correct_category", "category_update_timestamp", "previous_quality_score",
        "new_quality_score", "rejection_info", "message_template_title",
        "message_template_element", "message_template_footer", "message_template_buttons",
        "other_info",
    }),
    EventKind.PHONE_NUMBER_UPDATE: frozenset({
        "event", "decision", "requested_verified_name", "rejection_reason", "current_limit",
        "old_limit", "new_limit", "max_daily_conversation_per_phone",
    }),
    EventKind.BUSINESS_UPDATE: frozenset({
        "event", "decision", "max_daily_conversations_per_business", "max_phone_numbers_per_waba",
        "max_phone_numbers_per_business", "configuration_name", "provider_name", "provider_mid",
        "status", "created_timestamp", "updated_timestamp", "requester", "solution_id",
        "solution_status", "entity_type", "entity_id", "alert_info", "username",
    }),
}
_ADMIN_TEXT_KEYS = (
    "message_template_title", "message_template_element", "message_template_footer",
    "requested_verified_name",
)
_STRIP_FROM_CONTENT = frozenset({
    "timestamp", "from", "from_user_id", "from_parent_user_id", "to", "to_user_id",
    "to_parent_user_id", "history_context",
})


def esc(key: str) -> str:
    """RFC 6901 §4 reference-token escaping."""
    return key.replace("~", "~0").replace("/", "~1")


def leaves(obj: Any, ptr: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf (scalar, or empty container) of a JSON value with its pointer."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from leaves(v, f"{ptr}/{esc(str(k))}")
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from leaves(v, f"{ptr}/{i}")
    else:
        yield ptr, obj


def covered(ptr: str, pointers: frozenset[str] | set[str]) -> bool:
    """True if ``ptr`` or one of its ancestors is in ``pointers``."""
    if ptr in pointers or "" in pointers:
        return True
    cut = ptr.rfind("/")
    while cut > 0:
        ptr = ptr[:cut]
        if ptr in pointers:
            return True
        cut = ptr.rfind("/")
    return False


def canonical(obj: Any) -> bytes:
    """RFC 8785 bytes; values outside I-JSON (huge ints, NaN) fall back to sorted JSON."""
    try:
        return bytes(rfc8785.dumps(obj))
    except (ValueError, TypeError):
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode("utf-8", "surrogatepass")


def _sha(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def _digits(value: str | None) -> str:
    return re.sub(r"\D", "", value or "")


def to_datetime(value: Any) -> datetime | None:
    """Meta timestamps: epoch seconds as int or digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


class _Take:
    """Reads values from a JSON object and remembers which pointers were consumed."""

    def __init__(self) -> None:
        self.consumed: set[str] = set()

    def string(self, obj: Any, ptr: str, key: str) -> str | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return str(v)
        return None

    def num(self, obj: Any, ptr: str, key: str) -> float | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return float(v)
        return None

    def integer(self, obj: Any, ptr: str, key: str) -> int | None:
        if isinstance(obj, dict):
            v = obj.get(key)
            if isinstance(v, str) and v.isdigit():
                v = int(v)
            if isinstance(v, int) and not isinstance(v, bool):
                self.consumed.add(f"{ptr}/{esc(key)}")
                return v
        return None

    def boolean(self, obj: Any, ptr: str, key: str) -> bool | None:
        if isinstance(obj, dict) and isinstance(obj.get(key), bool):
            self.consumed.add(f"{ptr}/{esc(key)}")
            return bool(obj[key])
        return None

    def time(self, obj: Any, ptr: str, key: str) -> datetime | None:
        if isinstance(obj, dict):
            dt = to_datetime(obj.get(key))
            if dt is not None:
                self.consumed.add(f"{ptr}/{esc(key)}")
            return dt
        return None

    def tree(self, obj: Any, ptr: str, key: str, kind: type = dict) -> Any:
        """Consume a whole sub-object (an open vendor shape kept as typed JSON)."""
        if isinstance(obj, dict) and isinstance(obj.get(key), kind):
            self.consumed.add(f"{ptr}/{esc(key)}")
            return obj[key]
        return None

    def errors(self, obj: Any, ptr: str, key: str = "errors") -> tuple[ErrorInfo, ...]:
        items = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(items, list):
            return ()
        out = []
        for i, e in enumerate(items):
            if isinstance(e, dict):
                p = f"{ptr}/{esc(key)}/{i}"
                out.append(ErrorInfo(
                    code=self.integer(e, p, "code"), title=self.string(e, p, "title"),
                    message=self.string(e, p, "message"),
                    details=self.string(e.get("error_data"), f"{p}/error_data", "details"),
                    href=self.string(e, p, "href")))
        return tuple(out)


class _Change:
    """Context shared by the events of one ``changes[]`` item."""

    def __init__(self, *, field: str | None, waba_id: str | None, entry_time: datetime | None,
                 value: Any, vptr: str, base: set[str], problems: list[Problem]) -> None:
        self.field = field
        self.waba_id = waba_id
        self.entry_time = entry_time
        self.value = value
        self.vptr = vptr
        self.problems = problems
        t = _Take()
        meta = value.get("metadata") if isinstance(value, dict) else None
        self.phone_number_id = t.string(meta, f"{vptr}/metadata", "phone_number_id")
        self.display = t.string(meta, f"{vptr}/metadata", "display_phone_number")
        if isinstance(value, dict) and value.get("messaging_product") == "whatsapp":
            t.consumed.add(f"{vptr}/messaging_product")
        self.base = frozenset(base | t.consumed)
        raw_contacts = value.get("contacts") if isinstance(value, dict) else None
        self.contacts = [
            (f"{vptr}/contacts/{i}", c) for i, c in enumerate(raw_contacts or [])
            if isinstance(c, dict)
        ] if isinstance(raw_contacts, list) else []

    def is_business(self, number: str | None) -> bool:
        return bool(number) and _digits(number) == _digits(self.display) != ""

    def resolve(self, t: _Take, own: ContactRef, ptr: str) -> ContactRef:
        """Enrich ``own`` from the matching ``value.contacts[]`` entry (same wa_id/BSUID)."""
        ids = {own.wa_id, own.user_id, own.parent_user_id} - {None}
        for cptr, c in self.contacts:
            cids = {c.get(k) for k in ("wa_id", "user_id", "parent_user_id")} - {None}
            if not (ids & cids) and not (own.is_empty and len(self.contacts) == 1):
                continue
            merged = {}
            for key in ("wa_id", "user_id", "parent_user_id"):
                mine = getattr(own, key)
                theirs = c.get(key)
                if not isinstance(theirs, str):
                    merged[key] = mine
                elif mine is None or mine == theirs:
                    merged[key] = t.string(c, cptr, key)
                else:
                    merged[key] = mine
                    self.problems.append(Problem(
                        "contact_conflict", f"{cptr}/{key}",
                        f"contacts[].{key} differs from the item's own id at {ptr}"))
            prof = c.get("profile")
            name = own.name or t.string(prof, f"{cptr}/profile", "name")
            username = own.username or t.string(prof, f"{cptr}/profile", "username")
            return ContactRef(merged["wa_id"], merged["user_id"], merged["parent_user_id"],
                              username, name)
        return own


def _finish(cls: type[Event], ch: _Change, t: _Take, *, ptr: str, raw: Any, kind: EventKind,
            dedup_key: str, content: Any, exclude: frozenset[str] = frozenset(),
            **kw: Any) -> Event:
    consumed = frozenset(t.consumed | ch.base)
    unknown = {p: v for p, v in leaves(raw, ptr)
               if not covered(p, consumed) and not covered(p, exclude)}
    return cls(
        kind=kind, field=ch.field, waba_id=ch.waba_id, phone_number_id=ch.phone_number_id,
        display_phone_number=kw.pop("display_phone_number", None) or ch.display,
        dedup_key=dedup_key, content_hash=_sha(content), entry_time=ch.entry_time, raw=raw,
        unknown=MappingProxyType(unknown), consumed=consumed, **kw)


def _generic_key(kind: EventKind, ch: _Change, raw: Any) -> str:
    ctx = {"field": ch.field, "waba_id": ch.waba_id, "phone_number_id": ch.phone_number_id,
           "time": ch.entry_time.isoformat() if ch.entry_time else None, "object": raw}
    return f"{kind.value}:{_sha(ctx)[:32]}"


def _unknown_item(ch: _Change, ptr: str, raw: Any, why: str) -> Event:
    ch.problems.append(Problem("unparsed_item", ptr, why))
    return _finish(Event, ch, _Take(), ptr=ptr, raw=raw, kind=EventKind.UNKNOWN,
                   dedup_key=_generic_key(EventKind.UNKNOWN, ch, raw), content=raw,
                   occurred_at=None, origin=Origin.META, direction=Direction.NONE)


# ---------------------------------------------------------------- message-like items


def _content(t: _Take, obj: dict[str, Any], ptr: str, f: dict[str, Any]) -> None:
    """Parse ``type`` + its content object (also used for ``edit.message``)."""
    mtype = t.string(obj, ptr, "type")
    f.setdefault("message_type", mtype)
    texts: list[str] = f.setdefault("texts", [])
    ctx = obj.get("context")
    if isinstance(ctx, dict):
        cp = f"{ptr}/context"
        f["reply_to"] = t.string(ctx, cp, "id") or f.get("reply_to")
        f["reply_to_from"] = t.string(ctx, cp, "from")
        f["forwarded"] = bool(t.boolean(ctx, cp, "forwarded"))
        f["frequently_forwarded"] = bool(t.boolean(ctx, cp, "frequently_forwarded"))
        f["referred_product"] = t.tree(ctx, cp, "referred_product")
    if mtype is None:
        return
    body = obj.get(mtype)
    p = f"{ptr}/{esc(mtype)}"

    def text(o: Any, pp: str, key: str) -> None:
        s = t.string(o, pp, key)
        if s:
            texts.append(s)

    if mtype == "text":
        text(body, p, "body")
    elif mtype in _MEDIA_TYPES and isinstance(body, dict):
        text(body, p, "caption")
        text(body, p, "filename")
        f.setdefault("media", []).append(MediaRef(
            t.string(body, p, "id"), t.string(body, p, "mime_type"), t.string(body, p, "sha256"),
            body.get("filename") if isinstance(body.get("filename"), str) else None,
            t.string(body, p, "url"), t.boolean(body, p, "voice"), t.boolean(body, p, "animated")))
    elif mtype == "location" and isinstance(body, dict):
        f["location"] = Location(t.num(body, p, "latitude"), t.num(body, p, "longitude"),
                                 t.string(body, p, "name"), t.string(body, p, "address"),
                                 t.string(body, p, "url"))
        texts.extend(s for s in (f["location"].name, f["location"].address) if s)
    elif mtype == "contacts" and isinstance(body, list):
        t.consumed.add(p)
        f["contact_cards"] = tuple(c for c in body if isinstance(c, dict))
        for card in f["contact_cards"]:
            # names, org, phones, emails, addresses, urls — not the wa_id/"type" labels
            texts.extend(s for k, s in leaves(card) if isinstance(s, str) and s
                         and k.rsplit("/", 1)[-1] not in ("type", "wa_id"))
    elif mtype == "interactive" and isinstance(body, dict):
        itype = t.string(body, p, "type")
        f["interactive_type"] = itype
        sub = body.get(itype) if itype else None
        sp = f"{p}/{esc(itype or '')}"
        if itype in ("button_reply", "list_reply"):
            f["reply_id"] = t.string(sub, sp, "id")
            text(sub, sp, "title")
            text(sub, sp, "description")
        elif itype == "nfm_reply":
            text(sub, sp, "body")
            text(sub, sp, "response_json")
            f["flow_name"] = t.string(sub, sp, "name")
        elif itype == "call_permission_reply":
            f["call_permission"] = t.tree(body, p, itype)
    elif mtype == "button":
        f["reply_id"] = t.string(body, p, "payload")
        text(body, p, "text")
    elif mtype == "reaction":
        f["reaction_to"] = t.string(body, p, "message_id")
        emoji = t.string(body, p, "emoji")
        f["reaction_emoji"] = emoji or None  # "" or absent = reaction removed
        if emoji:
            texts.append(emoji)
    elif mtype == "order" and isinstance(body, dict):
        f["order"] = t.tree(obj, ptr, "order")
        if isinstance(body.get("text"), str) and body["text"]:
            texts.append(body["text"])
    elif mtype == "system":
        text(body, p, "body")
        f["system_type"] = t.string(body, p, "type")
        f["changed_to"] = ContactRef(t.string(body, p, "wa_id"), t.string(body, p, "user_id"),
                                     t.string(body, p, "parent_user_id"))
    elif mtype == "edit" and isinstance(body, dict):
        f["edit_of"] = t.string(body, p, "original_message_id")
        inner = body.get("message")
        if isinstance(inner, dict):
            f["edited_content"] = True
            _content(t, inner, f"{p}/message", f)
    elif mtype == "revoke":
        f["revoke_of"] = t.string(body, p, "original_message_id")
    elif mtype == "unsupported":
        f["unsupported_type"] = t.string(body, p, "type")


def _message(ch: _Change, kind: EventKind, ptr: str, obj: Any,
             thread: tuple[str, Any] | None = None) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return _unknown_item(ch, ptr, obj, "message item without a string id")
    t = _Take()
    f: dict[str, Any] = {}
    wamid = t.string(obj, ptr, "id")
    frm = ContactRef(t.string(obj, ptr, "from"), t.string(obj, ptr, "from_user_id"),
                     t.string(obj, ptr, "from_parent_user_id"))
    to = ContactRef(t.string(obj, ptr, "to"), t.string(obj, ptr, "to_user_id"),
                    t.string(obj, ptr, "to_parent_user_id"))
    if kind is EventKind.MESSAGE:
        origin, direction, own = Origin.CUSTOMER, Direction.INBOUND, frm
    elif kind is EventKind.ECHO or (kind is EventKind.HISTORY_MEDIA and thread == ("echo", None)):
        origin = Origin.BUSINESS_APP if kind is EventKind.ECHO else Origin.HISTORY
        direction, own = Direction.OUTBOUND, to
        if ch.is_business(frm.wa_id) or not frm.wa_id:
            own = to
        elif ch.is_business(to.wa_id):
            own = frm  # pywa's edit/revoke echoes: from/to swapped (decided by display number)
            ch.problems.append(Problem("echo_from_to_swapped", ptr,
                                       "echo 'to' is the business display number"))
    elif kind is EventKind.HISTORY_MEDIA:
        origin, direction, own = Origin.HISTORY, Direction.INBOUND, frm
    else:  # history thread message
        origin = Origin.HISTORY
        assert thread is not None
        tptr, tobj = thread
        own = ContactRef(t.string(tobj, tptr, "id"))
        tc = tobj.get("context") if isinstance(tobj, dict) else None
        if isinstance(tc, dict):
            cp = f"{tptr}/context"
            own = ContactRef(t.string(tc, cp, "wa_id") or own.wa_id, t.string(tc, cp, "user_id"),
                             t.string(tc, cp, "parent_user_id"), t.string(tc, cp, "username"))
        business = ch.is_business(frm.wa_id) or (
            frm.user_id is None and frm.wa_id is not None and own.wa_id is not None
            and _digits(frm.wa_id) != _digits(own.wa_id))
        direction = Direction.OUTBOUND if business else Direction.INBOUND
        hc = obj.get("history_context")
        f["history_status"] = t.string(hc, f"{ptr}/history_context", "status")
    contact = ch.resolve(t, own, ptr)
    occurred = t.time(obj, ptr, "timestamp")
    f["group_id"] = t.string(obj, ptr, "group_id")
    f["errors"] = t.errors(obj, ptr)
    f["referral"] = t.tree(obj, ptr, "referral")
    f["identity"] = t.tree(obj, ptr, "identity")
    _content(t, obj, ptr, f)
    if isinstance(f["referral"], dict):
        f["texts"].extend(s for k, s in leaves(f["referral"])
                          if isinstance(s, str) and s and k.rsplit("/", 1)[-1]
                          in ("headline", "body", "text"))
    f.pop("edited_content", None)
    f["texts"] = tuple(f["texts"])
    f["media"] = tuple(f.get("media", ()))
    content = {k: v for k, v in obj.items() if k not in _STRIP_FROM_CONTENT}
    for mt in _MEDIA_TYPES:
        if isinstance(content.get(mt), dict):
            content[mt] = {k: v for k, v in content[mt].items() if k != "url"}
    key = f"history_media:{wamid}" if kind is EventKind.HISTORY_MEDIA else f"msg:{wamid}"
    return _finish(MessageEvent, ch, t, ptr=ptr, raw=obj, kind=kind, dedup_key=key,
                   content={"direction": direction.value, "message": content},
                   occurred_at=occurred, origin=origin, direction=direction,
                   contact=None if contact.is_empty and not contact.name else contact,
                   message_id=wamid, **f)


# ---------------------------------------------------------------- other items


def _status(ch: _Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return _unknown_item(ch, ptr, obj, "status item without a string id")
    t = _Take()
    sid = t.string(obj, ptr, "id")
    status = t.string(obj, ptr, "status")
    rtype = t.string(obj, ptr, "recipient_type")
    rid = t.string(obj, ptr, "recipient_id")
    ruid = t.string(obj, ptr, "recipient_user_id")
    rpar = t.string(obj, ptr, "parent_recipient_user_id") or t.string(obj, ptr, "parent_user_id")
    group_id = None
    if rtype == "group":
        group_id = rid
        own = ContactRef(t.string(obj, ptr, "recipient_participant_id"),
                         t.string(obj, ptr, "recipient_participant_user_id"),
                         t.string(obj, ptr, "recipient_participant_parent_user_id"))
    else:
        own = ContactRef(rid, ruid, rpar)
    contact = ch.resolve(t, own, ptr)
    common: dict[str, Any] = {
              "occurred_at": t.time(obj, ptr, "timestamp"), "errors": t.errors(obj, ptr),
              "callback_data": t.string(obj, ptr, "biz_opaque_callback_data"),
              "contact": None if contact.is_empty else contact, "group_id": group_id}
    if obj.get("type") == "call" or ch.field == "calls":
        t.string(obj, ptr, "type")
        return _finish(CallEvent, ch, t, ptr=ptr, raw=obj, kind=EventKind.CALL,
                       dedup_key=f"call:{sid}:status:{(status or '').lower()}", content=obj,
                       origin=Origin.META, direction=Direction.NONE, call_id=sid,
                       call_event="status", status=status, **common)
    participant = own.wa_id or own.user_id if rtype == "group" else None
    key = f"status:{sid}:{status}" + (f":{participant}" if participant else "")
    return _finish(StatusEvent, ch, t, ptr=ptr, raw=obj, kind=EventKind.STATUS, dedup_key=key,
                   content=obj, origin=Origin.META, direction=Direction.OUTBOUND,
                   message_id=sid, status=status, recipient_type=rtype,
                   conversation=t.tree(obj, ptr, "conversation"),
                   pricing=t.tree(obj, ptr, "pricing"), **common)


def _call(ch: _Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return _unknown_item(ch, ptr, obj, "call item without a string id")
    t = _Take()
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
    return _finish(CallEvent, ch, t, ptr=ptr, raw=obj, kind=EventKind.CALL,
                   dedup_key=f"call:{cid}:{event}", content=obj, origin=origin,
                   direction=direction, contact=contact, call_id=cid, call_event=event,
                   call_direction=cdir, status=t.string(obj, ptr, "status"),
                   duration=t.integer(obj, ptr, "duration"),
                   started_at=t.time(obj, ptr, "start_time"),
                   ended_at=t.time(obj, ptr, "end_time"),
                   occurred_at=t.time(obj, ptr, "timestamp"), errors=t.errors(obj, ptr),
                   callback_data=t.string(obj, ptr, "biz_opaque_callback_data"))


def _simple(cls: type[Event], kind: EventKind, ch: _Change, ptr: str, obj: Any, t: _Take,
            *, origin: Origin, direction: Direction = Direction.NONE,
            exclude: frozenset[str] = frozenset(), **kw: Any) -> Event:
    return _finish(cls, ch, t, ptr=ptr, raw=obj, kind=kind,
                   dedup_key=_generic_key(kind, ch, obj), content=obj, origin=origin,
                   direction=direction, exclude=exclude, **kw)


def _state_sync(ch: _Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict):
        return _unknown_item(ch, ptr, obj, "state_sync item is not an object")
    t = _Take()
    c, cp = obj.get("contact"), f"{ptr}/contact"
    full, first = t.string(c, cp, "full_name"), t.string(c, cp, "first_name")
    own = ContactRef(t.string(c, cp, "phone_number"), t.string(c, cp, "user_id"),
                     t.string(c, cp, "parent_user_id"), t.string(c, cp, "username"), full)
    meta = obj.get("metadata")
    return _simple(ContactSyncEvent, EventKind.CONTACT_SYNC, ch, ptr, obj, t,
                   origin=Origin.BUSINESS_APP, contact=ch.resolve(t, own, ptr),
                   occurred_at=t.time(meta, f"{ptr}/metadata", "timestamp"),
                   texts=tuple(s for s in (full, first) if s),
                   action=t.string(obj, ptr, "action"), sync_type=t.string(obj, ptr, "type"),
                   full_name=full, first_name=first)


def _preference(ch: _Change, ptr: str, obj: Any) -> Event:
    if not isinstance(obj, dict):
        return _unknown_item(ch, ptr, obj, "user_preferences item is not an object")
    t = _Take()
    own = ContactRef(t.string(obj, ptr, "wa_id"), t.string(obj, ptr, "user_id"),
                     t.string(obj, ptr, "parent_user_id"))
    detail = t.string(obj, ptr, "detail")
    return _simple(UserPreferenceEvent, EventKind.USER_PREFERENCE, ch, ptr, obj, t,
                   origin=Origin.CUSTOMER, contact=ch.resolve(t, own, ptr),
                   occurred_at=t.time(obj, ptr, "timestamp"), texts=(detail,) if detail else (),
                   category=t.string(obj, ptr, "category"), value=t.string(obj, ptr, "value"),
                   detail=detail, signup_id=t.string(obj, ptr, "signup_id"))


def _history(ch: _Change, ptr: str, obj: Any) -> list[Event]:
    """One ``history_chunk`` (or ``history_error``) per ``history[]`` item + its messages."""
    if not isinstance(obj, dict):
        return [_unknown_item(ch, ptr, obj, "history item is not an object")]
    out: list[Event] = []
    t = _Take()
    errors = t.errors(obj, ptr)
    if errors:
        out.append(_simple(Event, EventKind.HISTORY_ERROR, ch, ptr, obj, t, origin=Origin.META,
                           occurred_at=None, errors=errors))
        t = _Take()
    meta, mp = obj.get("metadata"), f"{ptr}/metadata"
    phase, order = t.integer(meta, mp, "phase"), t.integer(meta, mp, "chunk_order")
    progress = t.integer(meta, mp, "progress")
    threads = obj.get("threads")
    thread_ids: list[str] = []
    owned: set[str] = set()
    if isinstance(threads, list):
        for i, th in enumerate(threads):
            tp = f"{ptr}/threads/{i}"
            tid = t.string(th, tp, "id")
            if tid:
                thread_ids.append(tid)
            msgs = th.get("messages") if isinstance(th, dict) else None
            for j, m in enumerate(msgs if isinstance(msgs, list) else []):
                mp_ = f"{tp}/messages/{j}"
                owned.add(mp_)
                out.append(_message(ch, EventKind.HISTORY_MESSAGE, mp_, m, (tp, th)))
            if isinstance(th, dict) and isinstance(th.get("context"), dict) and msgs:
                owned.add(f"{tp}/context")
    if errors and not (meta or threads):
        return out
    n = len(owned) - sum(1 for p in owned if p.endswith("/context"))
    chunk = _finish(HistoryChunkEvent, ch, t, ptr=ptr, raw=obj, kind=EventKind.HISTORY_CHUNK,
                    dedup_key=_generic_key(EventKind.HISTORY_CHUNK, ch, obj), content=obj,
                    exclude=frozenset(owned | ({f"{ptr}/errors"} if errors else set())),
                    occurred_at=None, origin=Origin.HISTORY, direction=Direction.NONE,
                    phase=phase, chunk_order=order, progress=progress,
                    thread_ids=tuple(thread_ids), message_count=n)
    return [chunk, *out]


def _admin(kind: EventKind, ch: _Change, ptr: str, obj: dict[str, Any]) -> Event:
    t = _Take()
    attrs = {k: obj[k] for k in sorted(_ADMIN_KEYS[kind] & obj.keys())}
    t.consumed.update(f"{ptr}/{esc(k)}" for k in attrs)
    event = attrs.get("event") or attrs.get("decision")
    texts = [attrs[k] for k in _ADMIN_TEXT_KEYS if isinstance(attrs.get(k), str)]
    texts += [s for k, s in leaves(obj.get("message_template_buttons"))
              if isinstance(s, str) and k.endswith("_text")]
    alert = obj.get("alert_info")
    if isinstance(alert, dict) and isinstance(alert.get("alert_description"), str):
        texts.append(alert["alert_description"])
    display = t.string(obj, ptr, "display_phone_number")
    if kind is EventKind.ACCOUNT_UPDATE and event == "PARTNER_REMOVED":
        display = display or (attrs.get("phone_number") if isinstance(
            attrs.get("phone_number"), str) else None)
    return _simple(AdminEvent, kind, ch, ptr, obj, t, origin=Origin.META,
                   occurred_at=ch.entry_time, texts=tuple(texts),
                   event=event if isinstance(event, str) else None,
                   attributes=MappingProxyType(attrs), display_phone_number=display)


# ---------------------------------------------------------------- envelope


def _change_events(ch: _Change) -> list[Event]:
    value, vp = ch.value, ch.vptr
    if not isinstance(value, dict):
        return [_unknown_item(ch, vp, value, "change value is not an object")]
    field = ch.field or ""
    out: list[Event] = []

    def each(key: str) -> Iterator[tuple[str, Any]]:
        items = value.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                yield f"{vp}/{key}/{i}", item
        elif key in value:
            out.append(_unknown_item(ch, f"{vp}/{key}", items, f"{key} is not an array"))

    hist = field == "history"
    for p, m in each("messages"):
        out.append(_message(ch, EventKind.HISTORY_MEDIA if hist else EventKind.MESSAGE, p, m))
    for p, m in each("message_echoes"):
        out.append(_message(ch, EventKind.HISTORY_MEDIA if hist else EventKind.ECHO, p, m,
                            ("echo", None) if hist else None))
    for p, s in each("statuses"):
        out.append(_status(ch, p, s))
    for p, c in each("calls"):
        out.append(_call(ch, p, c))
    for p, h in each("history"):
        out.extend(_history(ch, p, h))
    for p, s in each("state_sync"):
        out.append(_state_sync(ch, p, s))
    for p, u in each("user_preferences"):
        out.append(_preference(ch, p, u))
    for p, e in each("errors"):
        t = _Take()
        errs = t.errors({"errors": [e]}, "")
        t.consumed = {p + c.removeprefix("/errors/0") for c in t.consumed}
        out.append(_simple(Event, EventKind.WEBHOOK_ERROR, ch, p, e, t, origin=Origin.META,
                           occurred_at=None, errors=errs))
    if out:
        return out
    if field == "account_update":
        return [_admin(EventKind.ACCOUNT_UPDATE, ch, vp, value)]
    if field in _TEMPLATE_FIELDS or field.startswith("message_template_"):
        return [_admin(EventKind.TEMPLATE_UPDATE, ch, vp, value)]
    if field in _PHONE_FIELDS or field.startswith("phone_number_"):
        return [_admin(EventKind.PHONE_NUMBER_UPDATE, ch, vp, value)]
    if field in _BUSINESS_FIELDS:
        return [_admin(EventKind.BUSINESS_UPDATE, ch, vp, value)]
    return [_unknown_item(ch, vp, value, f"no parser for field {field!r}")]


def _whole_unknown(body: bytes, raw: Any, problems: list[Problem], code: str,
                   why: str) -> ParseResult:
    problems.append(Problem(code, "", why))
    ev = Event(kind=EventKind.UNKNOWN, field=None, waba_id=None, phone_number_id=None,
               display_phone_number=None, dedup_key=f"unknown:{hashlib.sha256(body).hexdigest()}",
               content_hash=hashlib.sha256(body).hexdigest(), occurred_at=None,
               origin=Origin.META, direction=Direction.NONE, raw=raw,
               unknown=MappingProxyType(dict(leaves(raw))))
    return ParseResult((ev,), tuple(problems))


def parse_delivery(body: bytes) -> ParseResult:
    """Parse one webhook POST body. Never raises; oddities become ``Problem``s."""
    problems: list[Problem] = []
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = body.decode("utf-8", "replace")
        return _whole_unknown(body, text, problems, "not_json", "body is not JSON")
    try:
        return _parse_doc(body, doc, problems)
    except RecursionError:  # pathological nesting: keep the body as one unknown event
        return _whole_unknown(body, doc, problems, "too_deep", "body nests too deeply")


def _parse_doc(body: bytes, doc: Any, problems: list[Problem]) -> ParseResult:
    if not isinstance(doc, dict) or not isinstance(doc.get("entry"), list):
        return _whole_unknown(body, doc, problems, "not_envelope",
                              "body is not an {object, entry[]} webhook envelope")
    base: set[str] = set()
    obj = doc.get("object")
    if obj == "whatsapp_business_account":
        base.add("/object")
    else:
        problems.append(Problem("unexpected_object", "/object", f"object is {obj!r}"))
    placed: list[tuple[str, Event]] = []
    for i, entry in enumerate(doc["entry"]):
        ep = f"/entry/{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            problems.append(Problem("bad_entry", ep, "entry without changes[]"))
            continue
        t = _Take()
        waba = t.string(entry, ep, "id")
        etime = t.time(entry, ep, "time")
        entry_field = entry.get("field") if isinstance(entry.get("field"), str) else None
        if entry.get("object") == "whatsapp_business_account":
            t.consumed.add(f"{ep}/object")
            problems.append(Problem("misplaced_object", f"{ep}/object", "object inside entry"))
        for j, change in enumerate(entry["changes"]):
            cp = f"{ep}/changes/{j}"
            ct = _Take()
            field = ct.string(change, cp, "field")
            value = change.get("value") if isinstance(change, dict) else None
            if field is None and entry_field:
                field = entry_field
                ct.consumed.add(f"{ep}/field")
                problems.append(Problem("misplaced_field", f"{ep}/field", "field inside entry"))
            if field is None and isinstance(value, dict) and isinstance(value.get("field"), str):
                field = value["field"]
                ct.consumed.add(f"{cp}/value/field")
                problems.append(Problem("misplaced_field", f"{cp}/value/field",
                                        "field inside value"))
                if value.get("object") == "whatsapp_business_account":
                    ct.consumed.add(f"{cp}/value/object")
                value = {k: v for k, v in value.items() if k not in ("field", "object")}
            if field is None:
                problems.append(Problem("missing_field", cp, "change without field"))
            ch = _Change(field=field, waba_id=waba, entry_time=etime, value=value,
                         vptr=f"{cp}/value", base=base | t.consumed | ct.consumed,
                         problems=problems)
            try:
                evs = _change_events(ch)
            except Exception as exc:  # never raise: a parser bug must not lose a delivery
                evs = [_unknown_item(ch, f"{cp}/value", value, f"parser error: {exc!r}")]
            placed.extend((cp, e) for e in evs)
            used = set().union(*(e.consumed for e in evs)) if evs else set()
            for cptr, _ in ch.contacts:
                if not any(p == cptr or p.startswith(cptr + "/") for p in used):
                    problems.append(Problem("contact_unmatched", cptr,
                                            "contacts[] entry matches no item"))
    return _attach_leftovers(body, doc, placed, problems)


def _attach_leftovers(body: bytes, doc: Any, placed: list[tuple[str, Event]],
                      problems: list[Problem]) -> ParseResult:
    """Give every leaf nobody consumed to the nearest event's ``unknown``."""
    if not placed:
        return _whole_unknown(body, doc, problems, "no_events", "envelope yielded no events")
    consumed: set[str] = set()
    for _, e in placed:
        consumed |= e.consumed
        consumed |= set(e.unknown)
    extra: dict[int, dict[str, Any]] = {}
    for p, v in leaves(doc):
        if covered(p, consumed):
            continue
        best = -1
        for idx, (cp, _) in enumerate(placed):
            if p.startswith(cp + "/") or p.startswith(cp.rsplit("/changes/", 1)[0] + "/"):
                best = idx
                break
        top = "/" + p.split("/")[1] if p else ""
        if best < 0 and not any(q.code == "unconsumed" and q.pointer == top for q in problems):
            problems.append(Problem("unconsumed", top, "data outside every parsed change"))
        extra.setdefault(max(best, 0), {})[p] = v
    events = []
    for idx, (_, e) in enumerate(placed):
        if idx in extra:
            e = replace(e, unknown=MappingProxyType({**e.unknown, **extra[idx]}))
        events.append(e)
    return ParseResult(tuple(events), tuple(problems))


__all__ = ["canonical", "covered", "leaves", "parse_delivery"]
