"""Message-like webhook items → ``MessageEvent``s, and history chunks (pure).

Covers ``messages[]``, ``message_echoes[]`` and the Coexistence ``history[]`` items
(a ``history_chunk`` event plus one event per thread message). The echo and history
direction rules are in ``parser``'s module docstring.
"""

from __future__ import annotations

from typing import Any

from archiver.whatsapp.change import Change, digits, finish, generic_key, simple, unknown_item
from archiver.whatsapp.events import (
    ContactRef,
    Direction,
    Event,
    EventKind,
    HistoryChunkEvent,
    Location,
    MediaRef,
    MessageEvent,
    Origin,
    Problem,
)
from archiver.whatsapp.pointers import Take, esc, leaves

_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
_STRIP_FROM_CONTENT = frozenset(
    {
        "timestamp",
        "from",
        "from_user_id",
        "from_parent_user_id",
        "to",
        "to_user_id",
        "to_parent_user_id",
        "history_context",
    }
)


def _content(t: Take, obj: dict[str, Any], ptr: str, f: dict[str, Any]) -> None:
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
        f.setdefault("media", []).append(
            MediaRef(
                t.string(body, p, "id"),
                t.string(body, p, "mime_type"),
                t.string(body, p, "sha256"),
                body.get("filename") if isinstance(body.get("filename"), str) else None,
                t.string(body, p, "url"),
                t.boolean(body, p, "voice"),
                t.boolean(body, p, "animated"),
            )
        )
    elif mtype == "location" and isinstance(body, dict):
        f["location"] = Location(
            t.num(body, p, "latitude"),
            t.num(body, p, "longitude"),
            t.string(body, p, "name"),
            t.string(body, p, "address"),
            t.string(body, p, "url"),
        )
        texts.extend(s for s in (f["location"].name, f["location"].address) if s)
    elif mtype == "contacts" and isinstance(body, list):
        t.consumed.add(p)
        f["contact_cards"] = tuple(c for c in body if isinstance(c, dict))
        for card in f["contact_cards"]:
            # names, org, phones, emails, addresses, urls — not the wa_id/"type" labels
            texts.extend(
                s
                for k, s in leaves(card)
                if isinstance(s, str) and s and k.rsplit("/", 1)[-1] not in ("type", "wa_id")
            )
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
        # The older ``user_preference_changed`` system message carries ``marketing``
        # (``stop`` / ``resume``) instead of a ``user_preferences`` webhook.
        f["system_preference"] = t.string(body, p, "marketing")
        f["changed_to"] = ContactRef(
            t.string(body, p, "wa_id"),
            t.string(body, p, "user_id"),
            t.string(body, p, "parent_user_id"),
        )
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


def parse_message(
    ch: Change, kind: EventKind, ptr: str, obj: Any, thread: tuple[str, Any] | None = None
) -> Event:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return unknown_item(ch, ptr, obj, "message item without a string id")
    t = Take()
    f: dict[str, Any] = {}
    wamid = t.string(obj, ptr, "id")
    frm = ContactRef(
        t.string(obj, ptr, "from"),
        t.string(obj, ptr, "from_user_id"),
        t.string(obj, ptr, "from_parent_user_id"),
    )
    to = ContactRef(
        t.string(obj, ptr, "to"),
        t.string(obj, ptr, "to_user_id"),
        t.string(obj, ptr, "to_parent_user_id"),
    )
    if kind is EventKind.MESSAGE:
        origin, direction, own = Origin.CUSTOMER, Direction.INBOUND, frm
    elif kind is EventKind.ECHO or (kind is EventKind.HISTORY_MEDIA and thread == ("echo", None)):
        origin = Origin.BUSINESS_APP if kind is EventKind.ECHO else Origin.HISTORY
        direction, own = Direction.OUTBOUND, to
        if ch.is_business(frm.wa_id) or not frm.wa_id:
            own = to
        elif ch.is_business(to.wa_id):
            own = frm  # pywa's edit/revoke echoes: from/to swapped (decided by display number)
            ch.problems.append(
                Problem("echo_from_to_swapped", ptr, "echo 'to' is the business display number")
            )
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
            own = ContactRef(
                t.string(tc, cp, "wa_id") or own.wa_id,
                t.string(tc, cp, "user_id"),
                t.string(tc, cp, "parent_user_id"),
                t.string(tc, cp, "username"),
            )
        business = ch.is_business(frm.wa_id) or (
            frm.user_id is None
            and frm.wa_id is not None
            and own.wa_id is not None
            and digits(frm.wa_id) != digits(own.wa_id)
        )
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
        f["texts"].extend(
            s
            for k, s in leaves(f["referral"])
            if isinstance(s, str) and s and k.rsplit("/", 1)[-1] in ("headline", "body", "text")
        )
    f.pop("edited_content", None)
    f["texts"] = tuple(f["texts"])
    f["media"] = tuple(f.get("media", ()))
    content = {k: v for k, v in obj.items() if k not in _STRIP_FROM_CONTENT}
    for mt in _MEDIA_TYPES:
        if isinstance(content.get(mt), dict):
            content[mt] = {k: v for k, v in content[mt].items() if k != "url"}
    key = f"history_media:{wamid}" if kind is EventKind.HISTORY_MEDIA else f"msg:{wamid}"
    return finish(
        MessageEvent,
        ch,
        t,
        ptr=ptr,
        raw=obj,
        kind=kind,
        dedup_key=key,
        content={"direction": direction.value, "message": content},
        occurred_at=occurred,
        origin=origin,
        direction=direction,
        contact=None if contact.is_empty and not contact.name else contact,
        message_id=wamid,
        **f,
    )


def parse_history(ch: Change, ptr: str, obj: Any) -> list[Event]:
    """One ``history_chunk`` (or ``history_error``) per ``history[]`` item + its messages."""
    if not isinstance(obj, dict):
        return [unknown_item(ch, ptr, obj, "history item is not an object")]
    out: list[Event] = []
    t = Take()
    errors = t.errors(obj, ptr)
    if errors:
        out.append(
            simple(
                Event,
                EventKind.HISTORY_ERROR,
                ch,
                ptr,
                obj,
                t,
                origin=Origin.META,
                occurred_at=None,
                errors=errors,
            )
        )
        t = Take()
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
                out.append(parse_message(ch, EventKind.HISTORY_MESSAGE, mp_, m, (tp, th)))
            if isinstance(th, dict) and isinstance(th.get("context"), dict) and msgs:
                owned.add(f"{tp}/context")
    if errors and not (meta or threads):
        return out
    n = len(owned) - sum(1 for p in owned if p.endswith("/context"))
    chunk = finish(
        HistoryChunkEvent,
        ch,
        t,
        ptr=ptr,
        raw=obj,
        kind=EventKind.HISTORY_CHUNK,
        dedup_key=generic_key(EventKind.HISTORY_CHUNK, ch, obj),
        content=obj,
        exclude=frozenset(owned | ({f"{ptr}/errors"} if errors else set())),
        occurred_at=None,
        origin=Origin.HISTORY,
        direction=Direction.NONE,
        phase=phase,
        chunk_order=order,
        progress=progress,
        thread_ids=tuple(thread_ids),
        message_count=n,
    )
    return [chunk, *out]


__all__ = ["parse_history", "parse_message"]
