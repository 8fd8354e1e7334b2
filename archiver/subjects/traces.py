"""Conversation traces: which subjects (or raw batches) a conversation's records name.

Written by every writer of a record with a ``conversation`` header **before** the record
exists (write-once, ``if_absent``); read by the hold lookups
(``archiver.retention.conv_lookup``, which documents the keys and how they answer)::

    convsubjects/<conversation>/<subject>        a record of it names the subject
    convsubjects/<conversation>/_none/<batch>    raw batch <batch> made a record of it
                                                 that names no subject (a group status)
    convsubjects/<conversation>/_none            the same, batch unknown (older traces)
    convsubjects/_complete                       every stored record is covered by a trace

An index of records, not retention logic: it depends on the store port only, so the
processor and the consent recorder can write it without knowing retention exists.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from functools import partial

from archiver.keyspace import (
    CONVSUBJECTS_COMPLETE_KEY,
    RECORDS_PREFIX,
    trace_key,
)
from archiver.store.errors import PreconditionFailed
from archiver.store.port import ObjectStore, StateStore

_SEEN_MAX = 200_000  # pairs remembered per process before the memory starts over


def leave_trace(
    state: StateStore,
    conversation: str,
    subject: str | None,
    source: str,
    batch: str | None = None,
) -> bool:
    """Write one trace if it is not there yet. Returns True when this call wrote it."""
    return _put_trace(state, trace_key(conversation, subject, batch), source)


def _put_trace(state: StateStore, key: str, source: str) -> bool:
    value = json.dumps({"source": source}, separators=(",", ":")).encode()
    try:
        state.put(key, value, if_absent=True)
        return True
    except PreconditionFailed:
        return False  # already there (an earlier record, batch or process)


class ConversationTraces:
    """The processor's trace writer: each (conversation, subject) pair is written at most
    once per process (the memory is shared by a processor and its siblings)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def pending(
        self, pairs: Iterable[tuple[str | None, str | None]], source: str
    ) -> list[Callable[[], None]]:
        """One write per pair of ``(conversation, subject)`` not yet written by this
        process (pairs without a conversation need none; ``source`` is the raw batch, which
        a subject-less record's trace names). Run them (side by side) before the records
        are written."""
        with self._lock:
            keys = sorted({trace_key(c, s, source) for c, s in pairs if c} - self._seen)
        return [partial(self._write, key, source) for key in keys]

    def _write(self, key: str, source: str) -> None:
        _put_trace(self.state, key, source)
        with self._lock:
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()  # only costs a few repeated (refused) writes
            self._seen.add(key)


def is_complete(state: StateStore) -> bool:
    return state.get(CONVSUBJECTS_COMPLETE_KEY) is not None


def mark_complete(state: StateStore, how: str) -> None:
    with contextlib.suppress(PreconditionFailed):  # set already
        state.put(CONVSUBJECTS_COMPLETE_KEY, json.dumps({"by": how}).encode(), if_absent=True)


def mark_if_fresh(objects: ObjectStore, state: StateStore) -> bool:
    """``Runtime.open``: on an archive with no record yet, every record to come is written
    by code that traces it, so the traces are complete. One state GET once set."""
    if is_complete(state):
        return True
    if next(iter(objects.list_keys(RECORDS_PREFIX)), None) is not None:
        return False  # records older than the traces: `archiver holds backfill-conversations`
    mark_complete(state, "fresh archive")
    return True


__all__ = [
    "ConversationTraces",
    "is_complete",
    "leave_trace",
    "mark_complete",
    "mark_if_fresh",
]
