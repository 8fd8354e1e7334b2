"""Capture grants: which raw delivery slots name a subject.

The processor writes one working-state value per (subject, raw batch) before the
records exist, ``capgrants/<subject>/<batch>`` → ``{"slots": [...]}``; erasure reads
them to find (and shred) every slot that mentions a person
(``archiver.retention.erasure.slot_grants``). An index of captures, not retention logic:
it depends on the store port only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable

from archiver.keyspace import capgrant_key
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore

# Record kinds without a subject of their own whose sealed content may quote a delivery
# (archiver.ingest.processor gives them the people the delivery names).
QUOTING_KINDS = frozenset({"unknown", "unprocessable"})


def grant_slots(
    state: StateStore, subject: str | None, batch_id: str, slots: Iterable[int]
) -> None:
    """Record that raw delivery ``slots`` of ``batch_id`` mention ``subject``: one
    working-state value per (subject, batch), so a batch costs one write per subject, not
    one per delivery. Idempotent (a replay merges into what an earlier attempt wrote)."""
    wanted = sorted(set(slots))
    if not subject or not wanted:
        return
    key = capgrant_key(subject, batch_id)
    # A batch's first attempt finds no value: create it in one round trip; a replay (or a
    # concurrent writer) loses the create and merges below.
    with contextlib.suppress(PreconditionFailed):
        state.put(key, json.dumps({"slots": wanted}).encode(), if_absent=True)
        return
    for _ in range(20):
        current = state.get(key)
        have = set(json.loads(current.value)["slots"]) if current else set()
        if set(wanted) <= have:
            return
        value = json.dumps({"slots": sorted(have | set(wanted))}).encode()
        try:
            if current is None:
                state.put(key, value, if_absent=True)
            else:
                state.put(key, value, if_match=current.token)
            return
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{key}: too much contention")


__all__ = ["QUOTING_KINDS", "grant_slots"]
