"""A record's policy facts, re-derived from its clear header (pure).

The processor decides a record's policy on these facts when it writes it; retention
(disposition, erasure, a changed policy set) re-derives the same facts from the stored
header, so the two can never disagree on what a record is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from policies.model import RecordFacts


def facts_of(header: Mapping[str, Any]) -> RecordFacts:
    """The policy facts of a record, re-derived from its header exactly as the processor
    derived them when it wrote the record (``Processor._write_one``)."""
    business = header.get("business") or {}
    occurred = header.get("occurred_at")
    captured = header.get("captured_at")
    return RecordFacts(
        business_number=business.get("display_phone_number"),
        phone_number_id=business.get("phone_number_id"),
        direction=header.get("direction"),
        origin=header.get("origin"),
        message_type=header.get("message_type"),
        # A source link (a re-delivery of an event) is kept as its event is.
        record_kind=str(header.get("link_kind") if header.get("kind") == "source"
                        else header.get("kind")),
        tags=frozenset(header.get("flags") or ()),
        message_time=_parse(occurred),
        capture_time=_parse(captured),
    )


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


__all__ = ["facts_of"]
