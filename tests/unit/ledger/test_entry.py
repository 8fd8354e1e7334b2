"""Log entries: canonical bytes, leaf hash, privacy guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.ledger.errors import EntryError
from archiver.ledger.merkle import hash_leaf

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHA = "ab" * 32


def test_canonical_bytes_and_hash() -> None:
    e = make_entry(
        EntryKind.RECORD,
        time=T,
        key="records/x",
        version_id="v1",
        sha256=SHA,
        size=10,
        retain_until=T + timedelta(days=1),
        subject="hmac:zz",
    )
    assert e.data == (
        b'{"key":"records/x","kind":"record","retain_until":"2026-01-03T03:04:05Z","sha256":"'
        + SHA.encode()
        + b'","size":10,"subject":"hmac:zz","time":"2026-01-02T03:04:05Z","v":1,"version_id":"v1"}'
    )
    assert e.leaf_hash == hash_leaf(e.data)
    assert parse_entry(e.data) == e
    assert e.key == "records/x" and e.version_id == "v1"


def test_time_is_normalised_to_utc() -> None:
    t = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert (
        make_entry(EntryKind.AUDIT, time=t, key="k", version_id="v", sha256=SHA).fields["time"]
        == "2026-01-02T03:04:05Z"
    )
    with pytest.raises(EntryError):
        make_entry(EntryKind.VERIFY_RUN, time=datetime(2026, 1, 1))


def test_rules() -> None:
    with pytest.raises(EntryError):
        make_entry(EntryKind.RAW, time=T, key="k")  # object kinds need version and hash
    with pytest.raises(EntryError):
        make_entry(EntryKind.HOLD_PLACED, time=T, key="k", **{"v": 2})
    with pytest.raises(EntryError):
        make_entry(EntryKind.AUDIT, time=T, key="k", version_id="v", sha256="AB" * 32)
    with pytest.raises(EntryError):
        make_entry(
            EntryKind.AUDIT,
            time=T,
            key="k",
            version_id="v",
            sha256=SHA,
            query={"to": "+44 7700 900123"},
        )
    make_entry(EntryKind.KEY_SHREDDED, time=T, subject="hmac:" + SHA)  # hex pseudonyms pass
    assert {k.value for k in EntryKind} >= {"raw", "checkpoint_key", "verify_run", "disposed"}


def test_parse_rejects_non_canonical_and_unknown() -> None:
    with pytest.raises(EntryError):
        parse_entry(b'{"v":1, "kind":"raw"}')
    with pytest.raises(EntryError):
        parse_entry(b'{"kind":"nope","v":1}')
    with pytest.raises(EntryError):
        parse_entry(b"\xff")
