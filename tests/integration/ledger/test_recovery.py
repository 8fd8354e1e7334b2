"""Crash recovery, deterministically: a batch claimed (and partly written) by a process
that then died is completed by the next appender, exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from backends import dead_claim, open_log

from archiver.ledger import merkle, tiles
from archiver.ledger.log import LogState, Pending

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("written", [0, 2, 100])
def test_dead_claim_is_completed_once(backend: dict[str, Any], written: int) -> None:
    log = open_log(backend, stale_after=0.3)
    first = [f"first-{i}".encode() for i in range(300)]
    assert log.append(first) == list(range(300))

    # A "dead" appender: staged, claimed, wrote `written` of its objects, then vanished.
    dead = [f"dead-{i}".encode() for i in range(40)]
    st = dead_claim(log, dead)
    staging = f"{log.prefix}staging/dead"
    objs = log._batch_objects(st.size, dead, [merkle.hash_leaf(e) for e in dead])
    for path, data in objs[:written]:
        log._put_same(path, data)

    other = open_log(backend, stale_after=0.3)
    assert other.append([b"after"]) == [340]
    assert other.entries(0, 341) == [*first, *dead, b"after"]
    assert other.root() == merkle.root_from_leaf_hashes(
        [merkle.hash_leaf(e) for e in [*first, *dead, b"after"]]
    )
    assert other.state.get(staging) is None  # the helper cleaned up


def test_claim_reply_lost_is_not_resequenced(backend: dict[str, Any]) -> None:
    """Two logs on the same state: a late owner finding its batch committed by a helper
    returns the helper's indices instead of appending again."""
    log = open_log(backend, stale_after=0.3)
    log.append([b"a"])
    st, token = log._load()
    entries = [b"x", b"y"]
    staging = f"{log.prefix}staging/slow"
    log.state.put(staging, tiles.encode_bundle(entries), if_absent=True)
    claim = LogState(st.origin, st.size, st.root, st.compact, Pending("slow", 1, 2, staging))
    claim_token = log.state.put(log.state_key, claim.to_json(), if_match=token)
    helper = open_log(backend, stale_after=0.0)
    assert helper.append([b"z"]) == [3]
    # the slow owner wakes up and finishes: same bytes, its commit CAS loses, indices stand
    assert log._complete(claim, claim_token, entries) == 1
    assert helper.entries(0, 4) == [b"a", b"x", b"y", b"z"]
    assert helper.size() == 4
