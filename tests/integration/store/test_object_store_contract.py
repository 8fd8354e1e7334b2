"""ObjectStore contract: the same cases against the local folder and real MinIO."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from minio.error import S3Error

from archiver.store.errors import (
    ObjectExists,
    ObjectLocked,
    ObjectNotFound,
    RetentionShortening,
)
from archiver.store.port import LockMode, Retention

pytestmark = pytest.mark.integration


def _ret(seconds: float, mode: LockMode = LockMode.COMPLIANCE) -> Retention:
    return Retention(mode, datetime.now(UTC) + timedelta(seconds=seconds))


def _assert_worm_refusal(exc: S3Error) -> None:
    # AWS answers 403 AccessDenied; MinIO answers 400 InvalidRequest "Object is WORM
    # protected and cannot be overwritten". Either way it is the server saying no.
    assert exc.code in ("AccessDenied", "InvalidRequest"), exc
    if exc.code == "InvalidRequest":
        assert "WORM" in (exc.message or "")


def test_put_returns_version_id_and_our_sha256(object_harness):
    h = object_harness
    data = b"raw webhook body \x00\xff"
    res = h.store.put(h.prefix + "a", data, retention=_ret(60))
    assert res.version_id
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert res.size == len(data)
    assert res.key == h.prefix + "a"


def test_get_and_stat_by_version_id(object_harness):
    h = object_harness
    key = h.prefix + "msg/1.json"
    retention = _ret(60)
    res = h.store.put(key, b'{"x":1}', retention=retention, content_type="application/json")
    assert h.store.get(key, res.version_id) == b'{"x":1}'
    info = h.store.stat(key, res.version_id)
    assert info.version_id == res.version_id
    assert info.size == 7
    assert info.sha256 == res.sha256
    assert info.legal_hold is False
    assert info.retention is not None
    assert info.retention.mode is LockMode.COMPLIANCE
    # S3 keeps milliseconds.
    assert abs(info.retention.retain_until - retention.retain_until) < timedelta(seconds=1)
    assert info.last_modified is not None
    assert abs(info.last_modified - datetime.now(UTC)) < timedelta(minutes=1)


def test_unknown_version_is_not_found(object_harness):
    h = object_harness
    key = h.prefix + "k"
    res = h.store.put(key, b"x", retention=_ret(60))
    other = h.store.put(h.prefix + "other", b"y", retention=_ret(60))
    with pytest.raises(ObjectNotFound):
        h.store.get(key, other.version_id)
    with pytest.raises(ObjectNotFound):
        h.store.stat(h.prefix + "missing", res.version_id)


def test_write_once_same_key_refused(object_harness):
    h = object_harness
    key = h.prefix + "once"
    first = h.store.put(key, b"first", retention=_ret(60))
    with pytest.raises(ObjectExists):
        h.store.put(key, b"second", retention=_ret(60))
    assert h.store.get(key, first.version_id) == b"first"
    assert [v.version_id for v in h.store.list_versions(key)] == [first.version_id]


def test_write_once_refuses_key_with_only_a_delete_marker(object_harness):
    h = object_harness
    key = h.prefix + "marked"
    # Longer keys sharing the prefix must not hide the marker.
    h.store.put(key + "/child", b"c", retention=_ret(60))
    h.store.put(key + "0", b"c", retention=_ret(60))
    h.make_marker_only(key)
    versions = [v for v in h.store.list_versions(key) if v.key == key]
    assert len(versions) == 1 and versions[0].is_delete_marker
    with pytest.raises(ObjectExists):
        h.store.put(key, b"late", retention=_ret(60))
    assert len([v for v in h.store.list_versions(key) if v.key == key]) == 1


def test_concurrent_creates_of_one_key_exactly_one_wins(object_harness):
    h = object_harness
    key = h.prefix + "race"
    n = 8
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[BaseException] = []

    def writer(i: int) -> None:
        barrier.wait()
        try:
            won.append(h.store.put(key, f"w{i}".encode(), retention=_ret(60)).version_id)
        except ObjectExists as exc:
            lost.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == n - 1
    assert [v.version_id for v in h.store.list_versions(key)] == won


def test_delete_of_locked_version_refused(object_harness):
    h = object_harness
    key = h.prefix + "locked"
    res = h.store.put(key, b"evidence", retention=_ret(120))
    if h.raw_delete is not None:
        # The refusal comes from the server itself, not from our adapter.
        with pytest.raises(S3Error) as info:
            h.raw_delete(key, res.version_id)
        _assert_worm_refusal(info.value)
    with pytest.raises(ObjectLocked):
        h.store.delete_version(key, res.version_id)
    assert h.store.get(key, res.version_id) == b"evidence"


def test_held_version_refused_until_hold_cleared_then_deleted_after_expiry(object_harness):
    h = object_harness
    key = h.prefix + "held"
    res = h.store.put(key, b"held", retention=_ret(2), legal_hold=True)
    assert h.store.stat(key, res.version_id).legal_hold is True
    time.sleep(3)  # retention has expired; only the hold protects the version now
    if h.raw_delete is not None:
        with pytest.raises(S3Error) as info:
            h.raw_delete(key, res.version_id)
        _assert_worm_refusal(info.value)
    with pytest.raises(ObjectLocked):
        h.store.delete_version(key, res.version_id)
    h.store.set_legal_hold(key, res.version_id, False)
    assert h.store.stat(key, res.version_id).legal_hold is False
    h.store.delete_version(key, res.version_id)
    with pytest.raises(ObjectNotFound):
        h.store.get(key, res.version_id)
    assert list(h.store.list_versions(key)) == []


def test_legal_hold_on_and_off_visible_in_stat(object_harness):
    h = object_harness
    key = h.prefix + "hold"
    res = h.store.put(key, b"x", retention=_ret(60))
    assert h.store.stat(key, res.version_id).legal_hold is False
    h.store.set_legal_hold(key, res.version_id, True)
    assert h.store.stat(key, res.version_id).legal_hold is True
    h.store.set_legal_hold(key, res.version_id, False)
    assert h.store.stat(key, res.version_id).legal_hold is False


def test_extend_retention_works_and_shortening_is_refused(object_harness):
    h = object_harness
    key = h.prefix + "extend"
    res = h.store.put(key, b"x", retention=_ret(30))
    later = datetime.now(UTC) + timedelta(seconds=90)
    h.store.extend_retention(key, res.version_id, later)
    info = h.store.stat(key, res.version_id)
    assert info.retention is not None
    assert abs(info.retention.retain_until - later) < timedelta(seconds=1)
    assert info.retention.mode is LockMode.COMPLIANCE
    with pytest.raises(RetentionShortening):
        h.store.extend_retention(key, res.version_id, later - timedelta(seconds=30))
    info2 = h.store.stat(key, res.version_id)
    assert info2.retention == info.retention


def test_list_versions_shows_every_version_and_delete_marker(object_harness):
    h = object_harness
    p = h.prefix + "list/"
    a = h.store.put(p + "a", b"a", retention=_ret(60))
    b = h.store.put(p + "b", b"bb", retention=_ret(60))
    h.add_delete_marker(p + "a")  # a marker on top of a locked version is allowed
    h.make_marker_only(p + "c")
    h.store.put(h.prefix + "listing-not-under-prefix", b"z", retention=_ret(60))

    rows = list(h.store.list_versions(p))
    assert [r.key for r in rows] == [p + "a", p + "a", p + "b", p + "c"]
    a_rows = [r for r in rows if r.key == p + "a"]
    assert a_rows[0].is_delete_marker and a_rows[0].is_latest  # newest first
    assert a_rows[1].version_id == a.version_id and not a_rows[1].is_latest
    assert not a_rows[1].is_delete_marker and a_rows[1].size == 1
    b_row = next(r for r in rows if r.key == p + "b")
    assert (b_row.version_id, b_row.is_latest, b_row.size) == (b.version_id, True, 2)
    assert next(r for r in rows if r.key == p + "c").is_delete_marker
    # Keys whose latest version is a delete marker are not listed as keys.
    assert list(h.store.list_keys(p)) == [p + "b"]
    # The version behind a marker is still readable by version id; a marker is not.
    assert h.store.get(p + "a", a.version_id) == b"a"
    with pytest.raises(ObjectNotFound):
        h.store.stat(p + "a", a_rows[0].version_id)
    with pytest.raises(ObjectNotFound):
        h.store.get(p + "a", a_rows[0].version_id)


def test_many_concurrent_writers(object_harness):
    h = object_harness
    results: dict[int, str] = {}

    def writer(i: int) -> None:
        results[i] = h.store.put(
            f"{h.prefix}bulk/{i:03d}", bytes([i]) * 100, retention=_ret(60)
        ).sha256

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 32
    assert list(h.store.list_keys(h.prefix + "bulk/")) == [
        f"{h.prefix}bulk/{i:03d}" for i in range(32)
    ]
