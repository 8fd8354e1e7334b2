"""A subject's records without reading every record header, from what ingestion already
writes to working state and the log.

The processor (``archiver.ingest.processor``) leaves two traces per raw batch:

* ``capgrants/<subject>/<batch>``: the delivery slots of ``batch`` that mention
  ``subject``; written for every record it derives (message, link, conflict, consent),
  keyed by the record header's ``subject``, *before* the records are written;
* ``proc/<batch>``: ``{"status": "done", "leaves": [...]}`` once the batch's leaves are
  in the log (``"logging"`` with the entries inline just before). The ``record`` leaves
  name each record version the batch wrote or reused (``key``, ``version_id``).

So the subject's records are: for each granted batch, the ``record`` leaves of that batch
whose record header names the subject. Records written outside the processor
(``POST /v1/consent``, ``raw: null``) leave no grant; the consent view
(``views/consent/<number>/<subject>/<purpose>``, ``archiver.consent``) names them.

The answer is exact only when every granted batch is finished; when one is not (a batch
in flight, or crashed before logging), or the subject has no grant at all (unknown, or
only API consent records), :func:`subject_records` falls back to the full scan
(:func:`archiver.retention.common.iter_records`), which cannot disagree with the store.

:func:`subjects_records_indexed` answers for several subjects in one pass (one consent-view
catch-up, each batch's records read once): a conversation's records are found through the
subjects they name (``archiver.retention.conversation_lookup``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from archiver.ingest.batch_status import BatchState
from archiver.keyspace import CONSENT_VIEW_PREFIX, PROC_PREFIX, capgrants_of, record_key
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.retention.common import StoredRecord, iter_records, live_versions, read_stored_record
from archiver.retention.expiry import leaf_runs, record_refs
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore, StateStore

logger = get_logger("archiver.retention.lookup")  # name kept: operators filter on it

_READERS = 16


def _batch_entries(
    state: StateStore, log: LogAppender, batches: Sequence[str]
) -> list[bytes] | None:
    """The log entries of ``batches``; None when one is not finished (or unknown)."""
    leaves: list[int] = []
    inline: list[bytes] = []
    for batch in batches:
        value = state.get(PROC_PREFIX + batch)
        if value is None:
            return None
        doc = json.loads(value.value)
        if doc.get("status") == BatchState.DONE and isinstance(doc.get("leaves"), list):
            leaves.extend(int(i) for i in doc["leaves"])
        elif doc.get("status") == BatchState.LOGGING and isinstance(doc.get("entries"), list):
            inline.extend(base64.b64decode(e) for e in doc["entries"])
        else:
            return None  # claimed: records may be written with no trace yet
    out = list(inline)
    for start, end in leaf_runs(leaves):
        out.extend(log.entries(start, end))
    return out


def _consent_refs(
    objects: ObjectStore, state: StateStore, log: LogAppender, subjects: Collection[str]
) -> set[tuple[str, str]]:
    """Records the consent view names for ``subjects`` (API consent records among them),
    after catching the view up with the log (incremental: from the view's own cursor)."""
    # Imported here: archiver.consent imports the processor, which imports this package.
    from archiver.consent import ConsentView

    ConsentView(log=log, objects=objects, state=state).catch_up()
    out: set[tuple[str, str]] = set()
    for key in state.list(CONSENT_VIEW_PREFIX):
        # views/consent/<number>/<subject>/<purpose>
        parts = key[len(CONSENT_VIEW_PREFIX) :].split("/")
        if len(parts) < 3 or parts[-2] not in subjects:
            continue
        value = state.get(key)
        if value is None:
            continue
        for change in json.loads(value.value):
            record_id = change.get("record_id")
            if not isinstance(record_id, str):
                continue
            rkey = record_key(record_id)
            out.update((rkey, v) for v in live_versions(objects, rkey))
    return out


def subjects_records_indexed(
    objects: ObjectStore,
    state: StateStore,
    log: LogAppender,
    subjects: Collection[str],
    *,
    also_batches: Collection[str] = (),
    keep: Callable[[StoredRecord], bool] | None = None,
) -> list[StoredRecord] | None:
    """The record versions of any of ``subjects`` through their grants, in key order;
    None when that path cannot answer exactly (a subject without a grant, or a granted
    batch not finished). One consent-view pass and one read per record of the union of
    their batches, however many subjects (a group conversation's participants).

    ``also_batches`` adds batches to read (a conversation's subject-less records), and
    ``keep`` replaces the "header names one of the subjects" test."""
    wanted = set(subjects)
    batches: set[str] = set(also_batches)
    for subject in sorted(wanted):
        prefix = capgrants_of(subject)
        granted = {k[len(prefix) :] for k in state.list(prefix)}
        if not granted:
            return None
        batches |= granted
    if not batches:
        return []
    entries = _batch_entries(state, log, sorted(batches))
    if entries is None:
        return None
    refs = sorted(record_refs(entries) | _consent_refs(objects, state, log, wanted))

    def read(ref: tuple[str, str]) -> StoredRecord | None:
        try:
            return read_stored_record(objects, *ref)
        except ObjectNotFound:
            return None  # disposed since

    # The leaves do not name the subject: every record of the subjects' batches is read
    # (one GET each, side by side) and kept when its header names one of them.
    with ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="subject-lookup") as pool:
        records = list(pool.map(read, refs))
    if keep is None:
        return [r for r in records if r is not None and r.subject in wanted]
    return [r for r in records if r is not None and keep(r)]


def batch_records(
    objects: ObjectStore, state: StateStore, log: LogAppender, batch: str
) -> tuple[list[StoredRecord], int] | None:
    """Every record version batch ``batch``'s leaves name, and one past its last leaf;
    None until the batch is ``done`` (records written but not logged yet are not all known,
    and the hold hooks have not seen them)."""
    value = state.get(PROC_PREFIX + batch)
    if value is None:
        return None
    doc = json.loads(value.value)
    if doc.get("status") != BatchState.DONE or not isinstance(doc.get("leaves"), list):
        return None
    leaves = [int(i) for i in doc["leaves"]]
    entries: list[bytes] = []
    for start, end in leaf_runs(leaves):
        entries.extend(log.entries(start, end))
    out = []
    for ref in sorted(record_refs(entries)):
        try:
            out.append(read_stored_record(objects, *ref))
        except ObjectNotFound:
            continue  # disposed since
    return out, (max(leaves) + 1 if leaves else 0)


def subject_records_indexed(
    objects: ObjectStore, state: StateStore, log: LogAppender, subject: str
) -> list[StoredRecord] | None:
    """The subject's record versions through its grants, in key order; None when that
    path cannot answer exactly (no grant, or a granted batch not finished)."""
    return subjects_records_indexed(objects, state, log, [subject])


def subject_records(
    objects: ObjectStore, state: StateStore, log: LogAppender | None, subject: str
) -> list[StoredRecord]:
    """The subject's record versions: through its grants when they answer exactly, else
    by the full scan."""
    if log is not None:
        fast = subject_records_indexed(objects, state, log, subject)
        if fast is not None:
            return fast
    logger.info("subject_lookup_full_scan", subject=subject)
    return [r for r in iter_records(objects) if r.subject == subject]


__all__ = [
    "batch_records",
    "leaf_runs",
    "record_refs",
    "subject_records",
    "subject_records_indexed",
    "subjects_records_indexed",
]
