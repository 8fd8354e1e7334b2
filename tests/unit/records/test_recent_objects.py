"""The in-process cache of records just written (archiver/indexing/recent.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from archiver.indexing.recent import RecentObjects
from archiver.runtime import Runtime
from tests.support.apps import embedded_settings


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


def test_one_cache_per_runtime_passed_to_its_processor_and_follower(tmp_path: Path) -> None:
    # No process-wide registry: Runtime.open makes the cache and hands it to both ends.
    a = Runtime.open(embedded_settings(tmp_path / "a"))
    b = Runtime.open(embedded_settings(tmp_path / "b"))
    try:
        assert isinstance(a.recent, RecentObjects)
        assert a.processor._recent is a.recent
        assert a.processor.sibling()._recent is a.recent
        assert a.follower._recent is a.recent
        assert a.recent is not b.recent
    finally:
        a.close()
        b.close()


def test_each_reader_takes_its_copy_once_and_the_entry_goes_after_the_last() -> None:
    cache = RecentObjects(readers=("index", "coexistence"))
    cache.put("records/ab/r1", "v1", b"body")
    assert cache.take("records/ab/r1", "v1", _sha(b"body"), "index") == b"body"
    assert cache.take("records/ab/r1", "v1", _sha(b"body"), "index") is None  # once
    assert len(cache) == 1 and cache.size_bytes == 4  # the view has not taken it yet
    assert cache.take("records/ab/r1", "v1", _sha(b"other"), "coexistence") is None
    assert len(cache) == 0 and cache.size_bytes == 0
    cache.put("records/ab/r2", "v1", b"body")
    assert cache.take("records/ab/r2", "v1", _sha(b"body"), "stranger") is None


def test_bounded_by_bytes_too_oldest_out() -> None:
    # A reader that never comes (its job runs in another process) cannot grow the cache.
    cache = RecentObjects(readers=("index", "coexistence"), max_bytes=10)
    for i in range(5):
        cache.put(f"k{i}", "v", b"xxxx")
    assert len(cache) == 2 and cache.size_bytes == 8
    assert cache.take("k2", "v", _sha(b"xxxx"), "index") is None
    assert cache.take("k4", "v", _sha(b"xxxx"), "index") == b"xxxx"
    cache.put("k4", "v", b"yyyyyy")  # written again: counted once
    assert cache.size_bytes == 10
