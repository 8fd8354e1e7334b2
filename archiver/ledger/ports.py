"""The log as the rest of the archive uses it: the ledger's two ports.

:class:`archiver.ledger.log.TransparencyLog` satisfies both. Code that only follows the
log (views, the index follower, verifiers of retention) asks for a :class:`LogReader`;
code that writes leaves asks for a :class:`LogAppender`. Declared once, here, so that a
change to the log's interface is one diff and every user is checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LogReader(Protocol):
    """Read the log's leaves (RFC 6962 leaf inputs, in order)."""

    def size(self) -> int:
        """The number of leaves logged so far."""
        ...

    def entries(self, start: int, end: int) -> list[bytes]:
        """Leaves ``start`` (inclusive) to ``end`` (exclusive)."""
        ...


class LogAppender(LogReader, Protocol):
    """Read the log and append leaves to it."""

    def size_floor(self) -> int:
        """A size the log has already reached (it never shrinks), possibly below the
        latest: what a writer saves as ``once_since`` before appending, without a read
        of the log's state when the process has seen one already."""
        ...

    def append(self, entries: Sequence[bytes], *, once_since: int | None = None) -> list[int]:
        """Log ``entries``; their leaf numbers. With ``once_since`` an entry already
        logged at or after that leaf is not logged again (a replay after a crash)."""
        ...


__all__ = ["LogAppender", "LogReader"]
