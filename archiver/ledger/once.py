"""Appending a prepared group of entries exactly once, across crashes.

A writer saves the exact entry bytes and the log size *before* appending (in its working
state), then calls ``append_once``. If it crashed after the append but before recording
the leaf indices, the replay finds the entries already in the log (by leaf hash, looking
only at leaves added since ``size_before``) and appends only the missing ones, so every
entry becomes exactly one leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from archiver.ledger.merkle import hash_leaf


class ReadAppendLog(Protocol):
    def size(self) -> int: ...

    def entries(self, start: int, end: int) -> list[bytes]: ...

    def append(self, entries: Sequence[bytes]) -> list[int]: ...


def append_once(log: ReadAppendLog, entries: Sequence[bytes], size_before: int) -> list[int]:
    """Leaf index of each entry, appending only those not yet in the log after
    ``size_before``. Entries of one group are distinct (each names its own object)."""
    size = log.size()
    found: dict[bytes, int] = {}
    if size > size_before:
        for offset, data in enumerate(log.entries(size_before, size)):
            found.setdefault(hash_leaf(data), size_before + offset)
    missing = [e for e in entries if hash_leaf(e) not in found]
    if missing:
        for data, index in zip(missing, log.append(missing), strict=True):
            found[hash_leaf(data)] = index
    return [found[hash_leaf(e)] for e in entries]
