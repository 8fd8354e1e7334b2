"""Following the log: feed each new leaf to a handler and keep a cursor in working state.

The derived views (``archiver.consent.ConsentView``, ``archiver.coexistence``) rebuild
themselves from the log this way. Generic: it knows entries, not what they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

    def each(start: int, entries: Sequence[Entry]) -> None:
        for offset, entry in enumerate(entries):
            handle(start + offset, entry)

    return follow_log_window(log, state, cursor_key, each, max_entries=max_entries)


def follow_log_window(
    log: LogReader,
    state: StateStore,
    cursor_key: str,
    handle_window: Callable[[int, Sequence[Entry]], None],
    *,
    max_entries: int = 5000,
) -> int:
    """``follow_log`` a window at a time: ``handle_window(first_index, entries)`` gets up to
    ``max_entries`` leaves at once (so a view can read their records side by side and write
    each of its values once per window), and the cursor moves only after it returns.

    ``handle_window`` must be idempotent, as ``follow_log``'s ``handle``: a crash before the
    cursor moves replays the whole window."""
    current = state.get(cursor_key)
    start = int(current.value) if current else 0
    size = log.size()
    end = min(size, start + max_entries)
    if start >= end:
        return 0
    handle_window(start, [parse_entry(data) for data in log.entries(start, end)])
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


def follow_window_to_end(
    log: LogReader,
    state: StateStore,
    cursor_key: str,
    handle_window: Callable[[int, Sequence[Entry]], None],
) -> int:
    """``follow_log_window`` until the cursor reaches the log's size; leaves consumed."""
    total = 0
    while consumed := follow_log_window(log, state, cursor_key, handle_window):
        total += consumed
    return total


__all__ = [
    "LogReader",
    "follow_log",
    "follow_log_window",
    "follow_to_end",
    "follow_window_to_end",
]
