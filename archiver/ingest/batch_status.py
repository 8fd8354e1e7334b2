"""Statuses of a raw batch's processing, as stored and as reported. Pure.

The values are stored (``proc/<batch>`` in the state store, see ``archiver.keyspace``)
and shown (``archiver status``, metrics labels): they never change.
"""

from __future__ import annotations

from enum import StrEnum


class BatchState(StrEnum):
    """``status`` of the ``proc/<batch>`` working-state document."""

    CLAIMED = "claimed"  # a processor owns it until ``until``
    LOGGING = "logging"  # records written; the entries inline, being logged
    DONE = "done"  # its leaves are in the log (``leaves``)
    WAITING = "waiting"  # reported only: captured, no ``proc/`` document yet


class BatchResult(StrEnum):
    """What one call to process a batch did (``BatchOutcome.status``)."""

    DONE = "done"  # processed now, or finished after a crash while logging
    SKIPPED = "skipped"  # done before, or claimed by another processor


__all__ = ["BatchResult", "BatchState"]
