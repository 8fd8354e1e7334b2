"""Migration: replay the identity links of records archived before identity merging.

Until issue 15 the alias registry was first-link-wins: a payload naming a phone number
and a BSUID (or a number change) that were already registered to two subjects linked
nothing, and nothing will link them again if Meta never sends that pair again (a number
change is announced once). ``relink_archive`` reads every archived record's contact as
Meta sent it and links its aliases exactly as the processor now does, merging subjects
and logging one ``subject_merged`` leaf per merge. The index follower re-indexes on
those leaves.

Idempotent and resumable: pointers are write-once, the merges are made ``by="relink"``
(so a second run finds them again), and a merge whose leaf the log already holds is not
logged twice. Cost: one read of every record and one full read of the log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from archiver.keys.errors import KeysError
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.ports import LogAppender
from archiver.records.model import Record, RecordError
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.common import iter_records
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.aliases import aliases_of
from archiver.subjects.identity import Identities, Merge, merged_entry
from archiver.whatsapp.events import ContactRef

BY = "relink"
_CHUNK = 5000


class _Keys(Protocol):
    def get(self, key_id: str) -> Any: ...


def _contact(value: Any) -> ContactRef | None:
    if not isinstance(value, dict):
        return None
    fields = ("wa_id", "user_id", "parent_user_id", "username")
    return ContactRef(**{k: value[k] for k in fields if isinstance(value.get(k), str)})


def relink_archive(
    *,
    objects: ObjectStore,
    state: StateStore,
    keys: _Keys,
    pseudo: Pseudonymizer,
    log: LogAppender,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Merge]:
    """Link what Meta linked in every archived record; return the merges logged now."""
    ids = Identities(state, clock=clock)
    merges: dict[str, Merge] = {}
    for stored in iter_records(objects):
        header = stored.header
        if not stored.subject or header.get("kind") in ("source", "consent"):
            continue
        if header.get("kind") == "api_send" and header.get("message_ref") is None:
            continue  # a refused send: its contact is the caller's request, not Meta's
        try:
            record = Record.parse(objects.get(stored.key, stored.version_id))
            event = record.open(keys.get(record.key_id).secret).get("event") or {}
        except (KeysError, RecordError):
            continue  # erased: nothing to link, nothing to find
        aliases = aliases_of(_contact(event.get("contact"))).all
        changed = aliases_of(_contact(event.get("changed_to"))).all
        if not aliases:
            continue
        business = header.get("business") or {}
        name = str(business.get("phone_number_id") or "") or (
            f"waba:{business['waba_id']}" if business.get("waba_id") else "unknown"
        )
        # The record's own subject is where its first alias went: no new subject appears.
        _, made = ids.link(pseudo, name, aliases + changed, default=stored.subject, by=BY)
        for merge in made:
            merges.setdefault(merge.subject, merge)
    logged: set[str] = set()
    size = log.size()
    for start in range(0, size, _CHUNK):
        for data in log.entries(start, min(size, start + _CHUNK)):
            entry = parse_entry(data)
            if entry.kind is EntryKind.SUBJECT_MERGED:
                logged.add(str(entry.fields.get("subject")))
    todo = [m for key, m in sorted(merges.items()) if key not in logged]
    if todo:
        log.append([merged_entry(m, pseudo) for m in todo])
    return todo


__all__ = ["relink_archive"]
