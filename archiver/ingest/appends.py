"""Log appends of concurrent batches, coalesced into one append of the proof log.

The log sequences one append at a time, whoever asks (a claim in working state, the tiles,
a commit: several round trips). Processors of one process finishing batches at the same
moment hand their entries here; whoever finds no append running becomes the leader and
appends everything waiting as one group, again until nothing waits; the others wait for
their indices. Each batch's entries were saved in its own state before (``logging``),
so crash safety is the log's ``once_since`` check, unchanged: the group's ``once_since``
is the smallest of its batches', and an entry is found in the log only if an attempt of
its own batch appended it (entries are distinct: each names its own raw batch, record
version, key or merge), which can only have happened after that batch saved its size.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from archiver.ledger.ports import LogAppender


@dataclass
class _Request:
    entries: Sequence[bytes]
    once_since: int
    finished: bool = False
    leaves: list[int] = field(default_factory=list)
    error: BaseException | None = None


class AppendCoalescer:
    """``append_once(entries, once_since)`` for the processors of one process."""

    def __init__(self, log: LogAppender) -> None:
        self.log = log
        self._cond = threading.Condition()
        self._waiting: list[_Request] = []
        self._leading = False

    def append_once(self, entries: Sequence[bytes], once_since: int) -> list[int]:
        """The leaf index of each of ``entries`` (appended now, or found appended by an
        earlier attempt at or after ``once_since``)."""
        request = _Request(list(entries), once_since)
        with self._cond:
            self._waiting.append(request)
            while not request.finished:
                if self._leading:  # an append is running: ours goes in the next one
                    self._cond.wait()
                    continue
                self._leading = True
                group, self._waiting = self._waiting, []
                self._cond.release()
                try:
                    self._append(group)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.leaves

    def _append(self, group: list[_Request]) -> None:
        try:
            leaves = self.log.append(
                [e for r in group for e in r.entries],
                once_since=min(r.once_since for r in group),
            )
            at = 0
            for r in group:
                r.leaves = leaves[at : at + len(r.entries)]
                at += len(r.entries)
        except Exception as exc:  # every batch of the group fails, to be retried
            for r in group:
                r.error = exc
        for r in group:
            r.finished = True
