"""``append_once``: a replayed group of entries becomes exactly one leaf each."""

from __future__ import annotations

from collections.abc import Sequence

from archiver.ledger.once import append_once


class ListLog:
    """The three log calls ``append_once`` makes, over a list (the pure logic under test;
    the real log's crash behaviour is exercised in tests/integration/capture)."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.leaves = list(leaves)
        self.appends = 0

    def size(self) -> int:
        return len(self.leaves)

    def entries(self, start: int, end: int) -> list[bytes]:
        return self.leaves[start:end]

    def append(self, entries: Sequence[bytes]) -> list[int]:
        self.appends += 1
        first = len(self.leaves)
        self.leaves.extend(entries)
        return list(range(first, first + len(entries)))


GROUP = [b"entry-a", b"entry-b", b"entry-c"]


def test_first_run_appends_every_entry() -> None:
    log = ListLog([b"older"])
    assert append_once(log, GROUP, size_before=1) == [1, 2, 3]
    assert log.leaves == [b"older", *GROUP]


def test_replay_after_a_complete_append_appends_nothing() -> None:
    log = ListLog([b"older"])
    first = append_once(log, GROUP, size_before=1)
    assert append_once(log, GROUP, size_before=1) == first
    assert log.leaves == [b"older", *GROUP] and log.appends == 1


def test_replay_after_a_partial_append_adds_only_the_missing() -> None:
    # Another writer's leaf landed in between; our first entry made it before the crash.
    log = ListLog([b"older", b"entry-a", b"someone-else"])
    assert append_once(log, GROUP, size_before=1) == [1, 3, 4]
    assert log.leaves == [b"older", b"entry-a", b"someone-else", b"entry-b", b"entry-c"]


def test_leaves_before_size_before_do_not_count() -> None:
    # The same bytes logged earlier belong to an earlier group, not to this one.
    log = ListLog([b"entry-a"])
    assert append_once(log, GROUP, size_before=1) == [1, 2, 3]
    assert log.leaves.count(b"entry-a") == 2
