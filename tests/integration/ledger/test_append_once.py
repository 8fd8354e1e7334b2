"""``append(..., once_since=)``: a replayed group of entries becomes exactly one leaf each,
including when the first attempt died between its claim and its commit (the CI failure
of the crash test: the retry waited for the dead claim, the helper completed it, and the
retry then appended the same entries again)."""

from __future__ import annotations

from typing import Any

import pytest
from backends import dead_claim, open_log

from archiver.ledger import merkle

pytestmark = pytest.mark.integration

GROUP = [b"entry-a", b"entry-b", b"entry-c"]


def test_first_attempt_appends_every_entry(backend: dict[str, Any]) -> None:
    log = open_log(backend)
    log.append([b"older"])
    assert log.append(GROUP, once_since=1) == [1, 2, 3]
    assert log.entries(0, log.size()) == [b"older", *GROUP]


def test_replay_after_a_complete_append_appends_nothing(backend: dict[str, Any]) -> None:
    log = open_log(backend)
    log.append([b"older"])
    first = log.append(GROUP, once_since=1)
    assert log.append(GROUP, once_since=1) == first
    assert log.size() == 4


def test_replay_after_a_partial_append_adds_only_the_missing(backend: dict[str, Any]) -> None:
    # Another writer's leaf landed in between; our first entry made it before the crash.
    log = open_log(backend)
    log.append([b"older", b"entry-a", b"someone-else"])
    assert log.append(GROUP, once_since=1) == [1, 3, 4]
    assert log.entries(0, log.size()) == [
        b"older",
        b"entry-a",
        b"someone-else",
        b"entry-b",
        b"entry-c",
    ]


def test_leaves_before_once_since_do_not_count(backend: dict[str, Any]) -> None:
    # The same bytes logged earlier belong to an earlier group, not to this one.
    log = open_log(backend)
    log.append([b"entry-a"])
    assert log.append(GROUP, once_since=1) == [1, 2, 3]
    assert log.entries(0, log.size()).count(b"entry-a") == 2


def test_replay_after_a_dead_claim_takes_the_claimed_indices(backend: dict[str, Any]) -> None:
    log = open_log(backend, stale_after=0.2)
    log.append([b"older"])
    dead_claim(log, GROUP)  # the first attempt died between its claim and its commit

    retry = open_log(backend, stale_after=0.2)
    assert retry.append(GROUP, once_since=1) == [1, 2, 3]
    assert retry.entries(0, retry.size()) == [b"older", *GROUP]
    assert retry.root() == merkle.root_from_leaf_hashes(
        [merkle.hash_leaf(e) for e in [b"older", *GROUP]]
    )


def test_replay_after_a_dead_partial_claim_appends_the_rest(backend: dict[str, Any]) -> None:
    log = open_log(backend, stale_after=0.2)
    log.append([b"older"])
    dead_claim(log, GROUP[:2])  # an attempt that had only part of the group staged

    retry = open_log(backend, stale_after=0.2)
    assert retry.append(GROUP, once_since=1) == [1, 2, 3]
    assert retry.size() == 4


def test_plain_append_still_sequences_repeated_bytes(backend: dict[str, Any]) -> None:
    log = open_log(backend)
    assert log.append([b"same", b"same"]) == [0, 1]
    assert log.append([b"same"]) == [2]
