"""The in-process cache of records just written (archiver/indexing/recent.py)."""

from __future__ import annotations

import hashlib

from archiver.indexing.recent import RecentObjects, recent_for


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_take_returns_bytes_only_when_the_hash_matches_and_only_once() -> None:
    cache = RecentObjects()
    cache.put("records/ab/r1", "v1", b"body")
    assert cache.take("records/ab/r1", "v1", _sha(b"other")) is None
    cache.put("records/ab/r1", "v1", b"body")
    assert cache.take("records/ab/r1", "v2", _sha(b"body")) is None  # another version
    assert cache.take("records/ab/r1", "v1", None) is None  # no hash: never trusted
    cache.put("records/ab/r1", "v1", b"body")
    assert cache.take("records/ab/r1", "v1", _sha(b"body")) == b"body"
    assert cache.take("records/ab/r1", "v1", _sha(b"body")) is None


def test_bounded_oldest_out() -> None:
    cache = RecentObjects(capacity=3)
    for i in range(5):
        cache.put(f"k{i}", "v", b"x")
    assert len(cache) == 3
    assert cache.take("k0", "v", _sha(b"x")) is None
    assert cache.take("k4", "v", _sha(b"x")) == b"x"


def test_one_cache_per_store_object() -> None:
    class Store:
        pass

    a, b = Store(), Store()
    assert recent_for(a) is recent_for(a)
    assert recent_for(a) is not recent_for(b)
