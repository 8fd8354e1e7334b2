"""Key sessions (``KeyStore.session``): key material cached per process for the processor
and the indexer, dropped on every replica by a shred before any key material is gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.keys import KeyShredded, KeyStore, LocalKek
from archiver.store.port import StateValue
from archiver.store.state_sqlite import SqliteStateStore

S1, S2 = "subj-aaaa", "subj-bbbb"


class CountingState(SqliteStateStore):
    """The real SQLite state store, counting reads (round trips on a remote store)."""

    reads = 0

    def get(self, key: str) -> StateValue | None:
        self.reads += 1
        return super().get(key)


def no_guard(_subject: str) -> None:
    return None


@pytest.fixture
def replicas(tmp_path: Path) -> tuple[KeyStore, KeyStore, CountingState]:
    """Two processes' key stores on one working state (the SQLite file is shared)."""
    kek = LocalKek.generate()
    a_state = CountingState(tmp_path / "state.db")
    b_state = SqliteStateStore(tmp_path / "state.db")
    return KeyStore(a_state, kek), KeyStore(b_state, kek), a_state


def test_a_session_reads_each_key_once_per_process(
    replicas: tuple[KeyStore, KeyStore, CountingState],
) -> None:
    a, _b, counted = replicas
    key, event = a.session().get_or_create(S1, creator="batch-1")
    assert event is not None and event["key_id"] == key.key_id
    counted.reads = 0
    later = a.session()  # a later batch: one read, of the epoch
    assert later.get_or_create(S1) == (key, None)
    assert later.get(key.key_id) == key
    assert counted.reads == 1
    # The batch that created the key gets its creation event again (a retry in-process
    # after a failure before the event was logged): the same answer as the store's own.
    again, repeated = a.session().get_or_create(S1, creator="batch-1")
    assert again == key and repeated is not None
    assert (again, repeated) == a.get_or_create(S1, creator="batch-1")
    assert repeated["key_id"] == event["key_id"]


def test_a_shred_on_another_replica_reaches_the_next_session(
    replicas: tuple[KeyStore, KeyStore, CountingState],
) -> None:
    a, b, _counted = replicas
    old, _ = a.session().get_or_create(S1)
    other, _ = a.session().get_or_create(S2)
    b.shred(S1, guard=no_guard)
    after = a.session()
    with pytest.raises(KeyShredded):
        after.get(old.key_id)
    fresh, event = after.get_or_create(S1)
    assert fresh.key_id != old.key_id and event is not None
    assert after.get(other.key_id) == other  # read again from the store, still live


def test_destroy_replayed_from_the_log_reaches_the_next_session(
    replicas: tuple[KeyStore, KeyStore, CountingState],
) -> None:
    a, b, _counted = replicas
    key, _ = a.session().get_or_create(S1)
    assert b.destroy(key.key_id)
    with pytest.raises(KeyShredded):
        a.session().get(key.key_id)


def test_a_session_opened_before_a_shred_caches_nothing_for_later_sessions(
    replicas: tuple[KeyStore, KeyStore, CountingState],
) -> None:
    a, _b, _counted = replicas
    key, _ = a.get_or_create(S1)  # created without a session: nothing cached yet
    early = a.session()
    a.shred(S1, guard=no_guard)  # this process: its cache is dropped at once
    with pytest.raises(KeyShredded):
        early.get(key.key_id)
    with pytest.raises(KeyShredded):
        a.session().get(key.key_id)
