"""One webhook ``changes[]`` item: the context its events share, and event builders (pure).

``finish`` turns the fields an item parser read into an event whose ``unknown`` holds
every leaf of the item that nobody consumed (see ``pointers``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from types import MappingProxyType
from typing import Any

from archiver.whatsapp.events import (
    ContactRef,
    Direction,
    Event,
    EventKind,
    Origin,
    Problem,
)
from archiver.whatsapp.pointers import Take, canonical_sha256, covered, leaves


def delivery_numbers(body: bytes) -> frozenset[str] | None:
    """The business numbers (``phone_number_id`` of every change's ``metadata``) one
    webhook delivery concerns; None when that cannot be told (not JSON, a change without
    a number). Meta may put changes of several numbers of a WABA in one delivery. The one
    reading of a raw delivery's scope: the export seals a slot it returns None for, or a
    number outside the package; erasure keeps such a slot's key for a scoped token."""
    try:
        doc = json.loads(body)
        numbers = set()
        for entry in doc["entry"]:
            for change in entry["changes"]:
                number = change["value"]["metadata"]["phone_number_id"]
                if not isinstance(number, str) or not number:
                    return None
                numbers.add(number)
    except (ValueError, KeyError, TypeError):
        return None
    return frozenset(numbers) if numbers else None


def digits(value: str | None) -> str:
    return re.sub(r"\D", "", value or "")


class Change:
    """Context shared by the events of one ``changes[]`` item."""

    def __init__(
        self,
        *,
        field: str | None,
        waba_id: str | None,
        entry_time: datetime | None,
        value: Any,
        vptr: str,
        base: set[str],
        problems: list[Problem],
    ) -> None:
        self.field = field
        self.waba_id = waba_id
        self.entry_time = entry_time
        self.value = value
        self.vptr = vptr
        self.problems = problems
        t = Take()
        meta = value.get("metadata") if isinstance(value, dict) else None
        self.phone_number_id = t.string(meta, f"{vptr}/metadata", "phone_number_id")
        self.display = t.string(meta, f"{vptr}/metadata", "display_phone_number")
        if isinstance(value, dict) and value.get("messaging_product") == "whatsapp":
            t.consumed.add(f"{vptr}/messaging_product")
        self.base = frozenset(base | t.consumed)
        raw_contacts = value.get("contacts") if isinstance(value, dict) else None
        self.contacts = (
            [
                (f"{vptr}/contacts/{i}", c)
                for i, c in enumerate(raw_contacts or [])
                if isinstance(c, dict)
            ]
            if isinstance(raw_contacts, list)
            else []
        )

    def is_business(self, number: str | None) -> bool:
        return bool(number) and digits(number) == digits(self.display) != ""

    def resolve(self, t: Take, own: ContactRef, ptr: str) -> ContactRef:
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
                    self.problems.append(
                        Problem(
                            "contact_conflict",
                            f"{cptr}/{key}",
                            f"contacts[].{key} differs from the item's own id at {ptr}",
                        )
                    )
            prof = c.get("profile")
            name = own.name or t.string(prof, f"{cptr}/profile", "name")
            username = own.username or t.string(prof, f"{cptr}/profile", "username")
            return ContactRef(
                merged["wa_id"], merged["user_id"], merged["parent_user_id"], username, name
            )
        return own


def finish(
    cls: type[Event],
    ch: Change,
    t: Take,
    *,
    ptr: str,
    raw: Any,
    kind: EventKind,
    dedup_key: str,
    content: Any,
    exclude: frozenset[str] = frozenset(),
    **kw: Any,
) -> Event:
    consumed = frozenset(t.consumed | ch.base)
    unknown = {
        p: v for p, v in leaves(raw, ptr) if not covered(p, consumed) and not covered(p, exclude)
    }
    return cls(
        kind=kind,
        field=ch.field,
        waba_id=ch.waba_id,
        phone_number_id=ch.phone_number_id,
        display_phone_number=kw.pop("display_phone_number", None) or ch.display,
        dedup_key=dedup_key,
        content_hash=canonical_sha256(content),
        entry_time=ch.entry_time,
        raw=raw,
        unknown=MappingProxyType(unknown),
        consumed=consumed,
        **kw,
    )


def generic_key(kind: EventKind, ch: Change, raw: Any) -> str:
    ctx = {
        "field": ch.field,
        "waba_id": ch.waba_id,
        "phone_number_id": ch.phone_number_id,
        "time": ch.entry_time.isoformat() if ch.entry_time else None,
        "object": raw,
    }
    return f"{kind.value}:{canonical_sha256(ctx)[:32]}"


def unknown_item(ch: Change, ptr: str, raw: Any, why: str) -> Event:
    ch.problems.append(Problem("unparsed_item", ptr, why))
    return finish(
        Event,
        ch,
        Take(),
        ptr=ptr,
        raw=raw,
        kind=EventKind.UNKNOWN,
        dedup_key=generic_key(EventKind.UNKNOWN, ch, raw),
        content=raw,
        occurred_at=None,
        origin=Origin.META,
        direction=Direction.NONE,
    )


def simple(
    cls: type[Event],
    kind: EventKind,
    ch: Change,
    ptr: str,
    obj: Any,
    t: Take,
    *,
    origin: Origin,
    direction: Direction = Direction.NONE,
    exclude: frozenset[str] = frozenset(),
    **kw: Any,
) -> Event:
    return finish(
        cls,
        ch,
        t,
        ptr=ptr,
        raw=obj,
        kind=kind,
        dedup_key=generic_key(kind, ch, obj),
        content=obj,
        origin=origin,
        direction=direction,
        exclude=exclude,
        **kw,
    )


__all__ = ["Change", "digits", "finish", "generic_key", "simple", "unknown_item"]
