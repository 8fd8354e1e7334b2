"""StateStore contract: the same cases against SQLite, a plain MinIO bucket and PostgreSQL."""

from __future__ import annotations

import random
import threading

import pytest

from archiver.store.errors import PreconditionFailed

pytestmark = pytest.mark.integration


def test_missing_key_reads_none(state_store):
    assert state_store.get("nope") is None


def test_put_get_roundtrip_and_token_changes(state_store):
    t1 = state_store.put("cursor", b"1")
    got = state_store.get("cursor")
    assert got is not None and got.value == b"1" and got.token == t1
    t2 = state_store.put("cursor", b"2")
    assert t2 != t1
    assert state_store.get("cursor").value == b"2"


def test_if_absent_creates_once(state_store):
    state_store.put("lease", b"a", if_absent=True)
    with pytest.raises(PreconditionFailed):
        state_store.put("lease", b"b", if_absent=True)
    assert state_store.get("lease").value == b"a"


def test_if_match_compare_and_swap(state_store):
    t1 = state_store.put("k", b"v1")
    t2 = state_store.put("k", b"v2", if_match=t1)
    with pytest.raises(PreconditionFailed):
        state_store.put("k", b"v3", if_match=t1)  # stale token
    assert state_store.get("k").value == b"v2"
    assert state_store.get("k").token == t2


def test_if_match_on_missing_key_fails(state_store):
    token = state_store.put("other", b"x")
    with pytest.raises(PreconditionFailed):
        state_store.put("missing", b"x", if_match=token)
    assert state_store.get("missing") is None


def test_if_match_and_if_absent_are_exclusive(state_store):
    with pytest.raises(ValueError):
        state_store.put("k", b"x", if_match="1", if_absent=True)


def _race_with_token(store, token: str, names: tuple[str, str]) -> tuple[list[str], list[str]]:
    barrier = threading.Barrier(len(names))
    wins: list[str] = []
    losses: list[str] = []

    def writer(name: str) -> None:
        barrier.wait()
        try:
            store.put("ctr", name.encode(), if_match=token)
            wins.append(name)
        except PreconditionFailed:
            losses.append(name)

    threads = [threading.Thread(target=writer, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins, losses


def test_two_concurrent_writers_with_same_token_exactly_one_wins(state_store):
    for r in range(5):
        token = state_store.put("ctr", f"base{r}".encode())
        wins, losses = _race_with_token(state_store, token, (f"A{r}", f"B{r}"))
        assert len(wins) == 1 and len(losses) == 1, (wins, losses)
        assert state_store.get("ctr").value == wins[0].encode()


def test_concurrent_if_absent_exactly_one_wins(state_store):
    n = 6
    barrier = threading.Barrier(n)
    wins: list[int] = []

    def creator(i: int) -> None:
        barrier.wait()
        try:
            state_store.put("leader", str(i).encode(), if_absent=True)
            wins.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert state_store.get("leader").value == str(wins[0]).encode()


def test_delete_and_conditional_delete(state_store):
    t1 = state_store.put("d", b"1")
    t2 = state_store.put("d", b"2")
    with pytest.raises(PreconditionFailed):
        state_store.delete("d", if_match=t1)
    assert state_store.get("d").value == b"2"
    state_store.delete("d", if_match=t2)
    assert state_store.get("d") is None
    state_store.delete("d")  # absent: fine without a condition
    with pytest.raises(PreconditionFailed):
        state_store.delete("d", if_match=t2)
    state_store.put("d", b"again", if_absent=True)  # a deleted key can be created again


def test_list_by_prefix_in_lexical_order(state_store):
    keys = ["holds/b", "holds/a/2", "holds/a/10", "holds/Z", "holds/é", "holdsX", "cursor/1"]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    for k in shuffled:
        state_store.put(k, b"x")
    expected = sorted(k for k in keys if k.startswith("holds/"))
    assert expected == ["holds/Z", "holds/a/10", "holds/a/2", "holds/b", "holds/é"]
    assert list(state_store.list("holds/")) == expected
    assert list(state_store.list("holds/a/")) == ["holds/a/10", "holds/a/2"]
    assert list(state_store.list("nothing/")) == []


def test_ping(state_store):
    state_store.ping()


def test_list_prefix_is_literal(state_store):
    """``_``, ``%`` and ``\\`` in a prefix are characters, not patterns (SQL LIKE)."""
    for k in ["a_b/1", "axb/1", "a%c/1", "azzc/1", "a\\d/1", "a\\\\d/2"]:
        state_store.put(k, b"x")
    assert list(state_store.list("a_b/")) == ["a_b/1"]
    assert list(state_store.list("a%c/")) == ["a%c/1"]
    assert list(state_store.list("a\\d/")) == ["a\\d/1"]
