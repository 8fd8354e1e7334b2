"""One ``StateStore`` over two: coordination state on a database, what erasure must be able
to destroy on a store that really forgets.

A PostgreSQL row deleted or overwritten survives in dead tuples, freed page space, the WAL
and its archives and replicas; nothing the application runs can wipe those. A wrapped data
key found there would still open the records it sealed (the KEK is not shredded), so a
shred would not be a shred. The keys under ``keyspace.SHREDDABLE_STATE`` (key material,
derived copies of sealed content, job parameters naming a contact) therefore go to the
``scrubbable`` store: the unversioned S3 state bucket (an overwrite or delete leaves no
version) or the SQLite file (``secure_delete`` plus the WAL truncated by ``scrub``). Every
other key goes to the ``primary`` (PostgreSQL).

The stores share no transaction, and none is needed: every operation of the port touches
one key, and each key lives on exactly one store. ``list`` merges both in byte order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

from archiver.store.port import StateStore, StateValue


def _utf8(key: str) -> bytes:
    return key.encode()


class RoutedStateStore:
    """``StateStore`` sending keys under ``prefixes`` to ``scrubbable``, the rest to
    ``primary``."""

    def __init__(
        self, primary: StateStore, scrubbable: StateStore, prefixes: Sequence[str]
    ) -> None:
        for a in prefixes:
            if not a or any(a != b and b.startswith(a) for b in prefixes):
                raise ValueError(f"routed prefixes must be non-empty and not nested: {a!r}")
        self.primary = primary
        self.scrubbable = scrubbable
        self.prefixes = tuple(prefixes)
        self.name = f"{primary.name}+{scrubbable.name}"

    def _store(self, key: str) -> StateStore:
        return self.scrubbable if key.startswith(self.prefixes) else self.primary

    def ping(self) -> None:
        self.primary.ping()
        self.scrubbable.ping()

    def get(self, key: str) -> StateValue | None:
        return self._store(key).get(key)

    def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        return self._store(key).put(key, value, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self._store(key).delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in byte order, from whichever stores can hold them. Each
        store only answers for its own keys (a state bucket used before keeps the others)."""
        if prefix.startswith(self.prefixes):
            return self.scrubbable.list(prefix)
        own = (k for k in self.primary.list(prefix) if not k.startswith(self.prefixes))
        parts: list[Iterator[str]] = [own]
        parts += [self.scrubbable.list(p) for p in self.prefixes if p.startswith(prefix)]
        return heapq.merge(*parts, key=_utf8)

    def scrub(self) -> None:
        """Drop old values of the scrubbable store (SQLite: WAL truncate); the primary
        never held any key material or derived copy."""
        scrub = getattr(self.scrubbable, "scrub", None)
        if callable(scrub):
            scrub()

    def close(self) -> None:
        for store in (self.primary, self.scrubbable):
            close = getattr(store, "close", None)
            if callable(close):
                close()
