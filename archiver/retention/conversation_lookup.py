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

from collections.abc import Callable
from dataclasses import dataclass

from archiver.ingest.capture import batch_id_of
from archiver.keyspace import (
    NO_SUBJECT,
    conversation_traces,
)
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.retention.common import StoredRecord, iter_records
from archiver.retention.subject_lookup import subjects_records_indexed
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.traces import is_complete, leave_trace, mark_complete

logger = get_logger("archiver.retention.conv_lookup")  # name kept: operators filter on it


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
    "backfill",
    "conversation_records",
    "conversation_records_indexed",
    "is_complete",
    "leave_trace",
    "mark_complete",
]
