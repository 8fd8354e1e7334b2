"""A conversation's records without reading every record header: through the subjects
its records name.

A conversation id is a one-way pseudonym (``Pseudonymizer.conversation``): it does not
name its subject, and a group conversation has several. So every writer of a record with
a ``conversation`` header first leaves a trace in working state, **before** the record
exists (write-once, ``if_absent``)::

    convsubjects/<conversation>/<subject>        a record of it names the subject
    convsubjects/<conversation>/_none/<batch>    raw batch <batch> made a record of it
                                                 that names no subject (a group status)
    convsubjects/<conversation>/_none            the same, batch unknown (older traces)
    convsubjects/_complete                       every stored record is covered by a trace

The writers: the processor (every record it derives: message, status, source link,
conflict, consent), and ``POST /v1/consent`` (``archiver.consent.ConsentRecorder``).
Media link / missing records carry no conversation. Traces are never deleted (like the
grants): a stale one only costs a look at a subject's records.

:func:`conversation_records_indexed` answers exactly, or says it cannot (None):

* no ``_complete`` marker (an archive older than the traces, not backfilled): None;
* a ``_none`` trace without a batch: None — such a record is only found by the scan;
* otherwise the conversation's records are the records of its traced subjects' batches
  and of its ``_none/<batch>`` batches
  (:func:`archiver.retention.subject_lookup.subjects_records_indexed`, None when one of those
  batches is in flight) whose header names the conversation; no trace at all: none.

The marker is set by ``Runtime.open`` on an archive with no record yet
(:func:`mark_if_fresh`), and by :func:`backfill` (``archiver holds
backfill-conversations``) after a full scan has traced every stored record. A process
still running code without the traces must not write records once the marker is set.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from archiver.ingest.capture import batch_id_of
from archiver.keyspace import (
    CONVSUBJECTS_COMPLETE_KEY,
    NO_SUBJECT,
    RECORDS_PREFIX,
    conversation_traces,
    trace_key,
)
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.retention.common import StoredRecord, iter_records
from archiver.retention.subject_lookup import subjects_records_indexed
from archiver.store.errors import PreconditionFailed
from archiver.store.port import ObjectStore, StateStore

logger = get_logger("archiver.retention.conv_lookup")  # name kept: operators filter on it

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


@dataclass(frozen=True, slots=True)
class BackfillReport:
    records: int
    traces_written: int

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "traces_written": self.traces_written}


def backfill(
    objects: ObjectStore, state: StateStore,
    progress: Callable[[int, int | None], None] | None = None,
) -> BackfillReport:
    """Trace every stored record (one full scan), then set the marker. Records written
    meanwhile by the processor or the consent API are traced by their writers. Idempotent;
    run it once every process writes traces."""
    traces: set[tuple[str, str | None, str | None]] = set()
    count = 0
    for r in iter_records(objects):
        count += 1
        if progress is not None:
            progress(count, None)
        conversation = r.header.get("conversation")
        if isinstance(conversation, str) and conversation:
            batch = batch_id_of(r.raw[0]) if r.subject is None and r.raw else None
            traces.add((conversation, r.subject, batch))
    written = sum(
        leave_trace(state, c, s, "backfill", b) for c, s, b in sorted(traces, key=str)
    )
    mark_complete(state, "backfill")
    logger.info("conversation_traces_backfilled", records=count, written=written)
    return BackfillReport(count, written)


def conversation_records_indexed(
    objects: ObjectStore, state: StateStore, log: LogAppender, conversation: str
) -> list[StoredRecord] | None:
    """The conversation's record versions through its traces, in key order; None when
    that path cannot answer exactly (see the module docstring)."""
    if not is_complete(state):
        return None
    prefix = conversation_traces(conversation)
    names = {k[len(prefix) :] for k in state.list(prefix)}
    if not names:
        return []
    if NO_SUBJECT in names:
        return None  # a subject-less record whose batch the trace does not say
    batches = {n[len(NO_SUBJECT) + 1 :] for n in names if n.startswith(NO_SUBJECT + "/")}
    subjects = {n for n in names if not n.startswith(NO_SUBJECT + "/")}
    return subjects_records_indexed(
        objects,
        state,
        log,
        subjects,
        also_batches=batches,
        keep=lambda r: r.header.get("conversation") == conversation,
    )


def conversation_records(
    objects: ObjectStore, state: StateStore, log: LogAppender | None, conversation: str
) -> list[StoredRecord]:
    """The conversation's record versions: through its traces when they answer exactly,
    else by the full scan."""
    if log is not None:
        fast = conversation_records_indexed(objects, state, log, conversation)
        if fast is not None:
            return fast
    logger.info("conversation_lookup_full_scan", conversation=conversation)
    return [r for r in iter_records(objects) if r.header.get("conversation") == conversation]


__all__ = [
    "BackfillReport",
    "ConversationTraces",
    "backfill",
    "conversation_records",
    "conversation_records_indexed",
    "is_complete",
    "leave_trace",
    "mark_complete",
    "mark_if_fresh",
]
