"""Small ports the processing pipeline depends on, so it can be wired to the real
policy engine, key store and log, and exercised with them in tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime  # re-exported type context
from typing import Any, Protocol

from archiver.keys.envelope import DataKey
from archiver.store.port import LockMode
from policies.model import RecordFacts


@dataclass(frozen=True, slots=True)
class PolicyRef:
    policy_id: str
    retain_until: datetime
    lock_mode: LockMode
    matched: tuple[str, ...] = ()


class PolicyDecider(Protocol):
    def decide(self, facts: RecordFacts) -> PolicyRef: ...


def raw_capture_facts(captured_at: datetime) -> RecordFacts:
    """What the engine knows of a raw capture batch when it is written: only its kind and
    its capture time (the deliveries are sealed, not yet parsed)."""
    return RecordFacts(
        business_number=None, phone_number_id=None, direction=None, origin=None,
        message_type=None, record_kind="raw_capture", capture_time=captured_at,
    )


class SubjectKeys(Protocol):
    """``archiver.keys.store.KeyStore`` satisfies this."""

    def get_or_create(
        self, subject_id: str, *, creator: str | None = None
    ) -> tuple[DataKey, dict[str, Any] | None]:
        """The subject's current key, and the key-store event when it was just created
        (or, for the same ``creator``, when that creator created it)."""

    def get(self, key_id: str) -> DataKey:
        """Raise ``archiver.keys.errors.KeyShredded`` when the key was destroyed."""

    def grant(self, key_id: str, subject_ids: Iterable[str]) -> None:
        """Shredding any of ``subject_ids`` destroys ``key_id`` too."""


# Called by a record writer (the processor, the consent recorder) right after a batch's
# leaves are appended, synchronously, and again if a crash interrupts the steps after the
# append: ``(written, merged)``, the ``(key, version_id)`` of each new record version and
# the subjects this batch merged. ``Runtime.open`` wires retention's hook
# (``archiver.retention.holds.on_logged``: hold new arrivals), so ingest need not know that
# retention exists. Must be idempotent.
LoggedHook = Callable[[Sequence[tuple[str, str]], Sequence[str]], None]


class KeySource(SubjectKeys, Protocol):
    """``SubjectKeys`` that can open a session: the same calls for one unit of work (a
    raw batch, a range of the log), served from a per-process cache of key material that
    no destruction since the session opened can have outlived (``KeyStore.session``)."""

    def session(self) -> SubjectKeys: ...


class RecentWrites(Protocol):
    """Where the processor leaves the bytes it just wrote for the index follower of the
    same process (``archiver.indexing.recent.RecentObjects``, one per runtime)."""

    def put(self, key: str, version_id: str, body: bytes) -> None: ...
