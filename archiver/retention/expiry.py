"""Disposition candidates from the proof log, without touching the evidence store.

Every stored object version the archive writes has a leaf of kind ``raw``, ``record`` or
``media`` carrying its ``retain_until`` at write (docs/formats.md "Log entry"); a later
lengthening of its lock is a ``retention_extended`` leaf (``archiver.retention.apply``,
``archiver.media.worker``, the processor for raw batches); a disposed version has a
``disposed`` leaf (``archiver.retention.disposition``). Folding those leaves gives each
version's latest *logged* retain-until, and the versions whose date has passed (or that
logged none: the store decides) are the only ones disposition needs to look at.

The fold keeps state only for versions that are candidates so far: a version whose logged
retain-until is still ahead can never become a candidate later in the log, because locks
only ever get longer (``apply`` never shortens, S3 refuses it in COMPLIANCE mode). So
memory is the number of *expired, undisposed* versions, not the size of the archive, and
the log is read ``chunk`` entries at a time.

The log is a hint, the store's lock is the truth: a candidate is always ``stat``-ed before
anything is deleted. A fold error can only cost a wasted ``stat`` (a version included too
eagerly, e.g. a ``retention_extended`` leaf sequenced before its object's own leaf, which
this fold ignores) or delay a disposal while the logged date is later than the lock.

``disposed`` leaves at or after ``redo_since`` (the log size when the last complete run
started) come back as *redo* candidates: a crash between the ``disposed`` leaf and the
delete leaves the version present, and the next run must finish it. Most of them are gone
already (one ``stat`` each, answered ObjectNotFound).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from archiver.ledger.entry import Entry, EntryKind, parse_entry
from archiver.ledger.ports import LogReader

CHUNK = 4096
_OBJECT_KINDS = {EntryKind.RAW: "raw", EntryKind.RECORD: "record", EntryKind.MEDIA: "media"}
# Cheap pre-filter on the canonical bytes (RFC 8785 writes ``"kind":"<kind>"`` verbatim):
# entries of other kinds (audit, tombstone, checkpoint, holds, keys) are not parsed at all.
_WANTED = tuple(
    f'"kind":"{k}"'.encode()
    for k in ("raw", "record", "media", "retention_extended", "disposed")
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One object version disposition should look at."""

    kind: str  # record | raw | media
    key: str
    version_id: str
    retain_until: datetime | None  # latest logged; None: the log names no date
    redo: bool = False  # a ``disposed`` leaf names it (finish an interrupted disposal)


@dataclass(frozen=True, slots=True)
class Candidates:
    versions: tuple[Candidate, ...]
    log_size: int  # entries folded: [0, log_size)
    locked: int = 0  # versions whose logged retain-until is still ahead (approximate)


class ExpiryFold:
    """The pure fold: feed it ``(index, entry)`` in log order, then ask :meth:`result`."""

    def __init__(self, now: datetime, *, redo_since: int | None = None) -> None:
        self.now = now
        self.redo_since = redo_since
        self._open: dict[tuple[str, str], tuple[str, datetime | None]] = {}
        self._redo: dict[tuple[str, str], str] = {}
        # Versions the log says are still locked, counted from their leaves (no state: a
        # replayed leaf of the same version counts twice); for the report only.
        self.locked = 0

    def add(self, index: int, entry: Entry) -> None:
        key, version = entry.key, entry.version_id
        if key is None or version is None:
            return
        ident = (key, version)
        kind = _OBJECT_KINDS.get(entry.kind)
        if kind is not None:
            until = _date(entry.fields.get("retain_until"))
            if until is None or until <= self.now:
                previous = self._open.get(ident)
                if previous is not None and previous[1] is not None and until is not None:
                    until = max(until, previous[1])  # a replayed leaf: keep the later date
                self._open[ident] = (kind, until)
            else:  # still locked, and a lock only grows: never a candidate in this fold
                self._open.pop(ident, None)
                self.locked += 1
        elif entry.kind is EntryKind.RETENTION_EXTENDED:
            current = self._open.get(ident)
            until = _date(entry.fields.get("retain_until"))
            if current is None or until is None:
                return  # not a candidate (or extended before its own leaf: stat decides)
            if until > self.now:
                del self._open[ident]
                self.locked += 1
            elif current[1] is None or until > current[1]:
                self._open[ident] = (current[0], until)
        elif entry.kind is EntryKind.DISPOSED:
            known = self._open.pop(ident, None)
            if self.redo_since is not None and index >= self.redo_since:
                logged = entry.fields.get("object_kind")
                kind = logged if isinstance(logged, str) else (known[0] if known else None)
                if kind in ("record", "raw", "media"):
                    self._redo[ident] = kind

    def result(self, log_size: int) -> Candidates:
        out = [Candidate(k, key, v, until) for (key, v), (k, until) in self._open.items()]
        out += [
            Candidate(k, key, v, None, redo=True)
            for (key, v), k in self._redo.items()
            if (key, v) not in self._open
        ]
        out.sort(key=lambda c: (c.kind, c.key, c.version_id))
        return Candidates(tuple(out), log_size, self.locked)


def fold(
    entries: Iterable[tuple[int, bytes]], now: datetime, *, redo_since: int | None = None,
    log_size: int = 0,
) -> Candidates:
    """Fold ``(index, entry bytes)`` pairs (pure; see the module docstring)."""
    acc = ExpiryFold(now, redo_since=redo_since)
    for index, data in entries:
        if any(w in data for w in _WANTED):
            acc.add(index, parse_entry(data))
    return acc.result(log_size)


def log_entries(log: LogReader, *, end: int | None = None, chunk: int = CHUNK
                ) -> Iterator[tuple[int, bytes]]:
    """``(index, bytes)`` of ``[0, end)`` (default: the size now), read ``chunk`` at a time
    so that only one chunk of raw entries is in memory."""
    size = log.size() if end is None else end
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        yield from enumerate(log.entries(start, stop), start)


def candidates(
    log: LogReader, now: datetime, *, redo_since: int | None = None, chunk: int = CHUNK
) -> Candidates:
    """The versions due for a look at ``now``: fold the whole log as of its size now."""
    size = log.size()
    return fold(log_entries(log, end=size, chunk=chunk), now, redo_since=redo_since,
                log_size=size)


def record_refs(entries: Iterable[bytes]) -> set[tuple[str, str]]:
    """``(key, version_id)`` of the ``record`` leaves among ``entries`` (pure)."""
    out: set[tuple[str, str]] = set()
    for data in entries:
        entry = parse_entry(data)
        if entry.kind is EntryKind.RECORD and entry.key and entry.version_id:
            out.add((entry.key, entry.version_id))
    return out


def leaf_runs(leaves: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` runs of leaf indexes (pure): a batch's leaves are one
    run, so reading them is one bundle read per 256 leaves."""
    runs: list[tuple[int, int]] = []
    for leaf in sorted(set(leaves)):
        if runs and runs[-1][1] == leaf:
            runs[-1] = (runs[-1][0], leaf + 1)
        else:
            runs.append((leaf, leaf + 1))
    return runs


def _date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
