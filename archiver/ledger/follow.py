"""Following the log: feed each new leaf to a handler and keep a cursor in working state.

The derived views (``archiver.consent.ConsentView``, ``archiver.coexistence``) rebuild
themselves from the log this way. Generic: it knows entries, not what they mean.
"""

from __future__ import annotations

from collections.abc import Callable

from archiver.ledger.entry import Entry, parse_entry
from archiver.ledger.ports import LogReader
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore


def follow_log(
    log: LogReader,
    state: StateStore,
    cursor_key: str,
    handle: Callable[[int, Entry], None],
    *,
    max_entries: int = 5000,
) -> int:
    """Feed leaves ``[cursor, size)`` to ``handle(index, entry)``; advance the cursor.

    ``handle`` must be idempotent: a crash (or a concurrent follower) may replay leaves.
    Returns how many leaves were consumed.
    """
    current = state.get(cursor_key)
    start = int(current.value) if current else 0
    size = log.size()
    end = min(size, start + max_entries)
    if start >= end:
        return 0
    for offset, data in enumerate(log.entries(start, end)):
        handle(start + offset, parse_entry(data))
    try:
        if current is None:
            state.put(cursor_key, str(end).encode(), if_absent=True)
        else:
            state.put(cursor_key, str(end).encode(), if_match=current.token)
    except PreconditionFailed:
        pass  # another follower advanced it; our updates were idempotent
    return end - start


def follow_to_end(
    log: LogReader, state: StateStore, cursor_key: str, handle: Callable[[int, Entry], None]
) -> int:
    """``follow_log`` until the cursor reaches the log's size; returns leaves consumed."""
    total = 0
    while consumed := follow_log(log, state, cursor_key, handle):
        total += consumed
    return total


__all__ = ["LogReader", "follow_log", "follow_to_end"]
