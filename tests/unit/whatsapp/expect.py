"""The summary of parser output that expectation files pin (also used to draft them)."""

from __future__ import annotations

from typing import Any

from archiver.whatsapp import ParseResult


def summarize(result: ParseResult) -> dict[str, Any]:
    events = []
    for e in result.events:
        events.append({
            "kind": e.kind.value,
            "dedup_key": e.dedup_key,
            "message_id": e.message_id,
            "origin": e.origin.value,
            "direction": e.direction.value,
            "message_type": e.message_type,
            "field": e.field,
            "waba_id": e.waba_id,
            "phone_number_id": e.phone_number_id,
            "contact_wa_id": e.contact.wa_id if e.contact else None,
            "contact_user_id": e.contact.user_id if e.contact else None,
            "contact_name": e.contact.name if e.contact else None,
            "group_id": e.group_id,
            "occurred_at": e.occurred_at.isoformat() if e.occurred_at else None,
            "texts": list(e.texts),
            "media_ids": [m.media_id for m in e.media],
            "reply_to": e.reply_to,
            "edit_of": e.edit_of,
            "revoke_of": e.revoke_of,
            "error_codes": [x.code for x in e.errors],
            "unknown_paths": sorted(e.unknown),
        })
    return {"problems": sorted({p.code for p in result.problems}), "events": events}
