"""An append's working-state round trips (issue 10): an appender that made the last commit
claims from the state it committed, without reading it again, and a small batch rides in
its claim instead of a staging key of its own. Neither gives up anything: a stale memory
loses the claim and re-reads, and a dead inline claim is completed by the next appender."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from backends import open_log

from archiver.ledger import merkle
from archiver.ledger.log import INLINE_MAX, LogState, Pending, TransparencyLog

pytestmark = pytest.mark.integration


def _count_state(log: TransparencyLog, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of the log's real state store, as ``method key``."""
    calls: Counter[str] = Counter()
    state = log.state
    get, put, delete = state.get, state.put, state.delete

    def counted_get(key: str) -> Any:
        calls[f"get {key}"] += 1
        return get(key)

    def counted_put(key: str, value: bytes, **kw: Any) -> str:
        calls[f"put {key}"] += 1
        return put(key, value, **kw)

    def counted_delete(key: str, **kw: Any) -> None:
        calls[f"delete {key}"] += 1
        delete(key, **kw)

    monkeypatch.setattr(state, "get", counted_get)
    monkeypatch.setattr(state, "put", counted_put)
    monkeypatch.setattr(state, "delete", counted_delete)
    return calls


def test_a_second_small_append_is_a_claim_and_a_commit(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(backend)
    assert log.append([b"first"]) == [0]
    calls = _count_state(log, monkeypatch)
    assert log.append([b"second", b"third"], once_since=1) == [1, 2]
    # Two writes of the state (claim, commit); no read, no staging key written or dropped.
    assert calls == Counter({f"put {log.state_key}": 2}), calls
    assert log.entries(0, 3) == [b"first", b"second", b"third"]
    assert log.size_floor() == 3


def test_a_stale_memory_loses_its_claim_and_rereads(backend: dict[str, Any]) -> None:
    one, other = open_log(backend), open_log(backend)
    assert one.append([b"a"]) == [0]
    assert other.append([b"b"]) == [1]  # ``one`` remembers size 1: stale now
    assert one.size_floor() == 1  # a lower bound, never above the log
    assert one.append([b"c"]) == [2]
    assert one.append([b"b"], once_since=1) == [1]  # found, not appended twice
    assert other.entries(0, 3) == [b"a", b"b", b"c"]
    assert other.root() == merkle.root_from_leaf_hashes(
        [merkle.hash_leaf(e) for e in (b"a", b"b", b"c")]
    )


def test_a_dead_inline_claim_is_completed_once(backend: dict[str, Any]) -> None:
    log = open_log(backend, stale_after=0.3)
    assert log.append([b"first"]) == [0]
    dead = [f"dead-{i}".encode() for i in range(5)]
    st, token = log._load()
    claim = LogState(st.origin, st.size, st.root, st.compact,
                     Pending("dead", st.size, len(dead), "", "gone:1", tuple(dead)))  # fmt: skip
    log.state.put(log.state_key, claim.to_json(), if_match=token)
    other = open_log(backend, stale_after=0.3)
    assert other.append([b"after"]) == [6]
    assert other.entries(0, 7) == [b"first", *dead, b"after"]
    assert other.root() == merkle.root_from_leaf_hashes(
        [merkle.hash_leaf(e) for e in [b"first", *dead, b"after"]]
    )


def test_a_large_batch_is_still_staged(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(backend)
    big = [bytes([65 + i]) * 20_000 for i in range(INLINE_MAX // 20_000 + 1)]
    calls = _count_state(log, monkeypatch)
    assert log.append(big) == list(range(len(big)))
    staged = [c for c in calls if c.startswith("put ") and "/staging/" in c]
    assert len(staged) == 1 and calls[staged[0].replace("put", "delete", 1)] == 1, calls
    assert log.entries(0, len(big)) == big
