"""The pure parts of verify's listing pass: pending against finding under the grace
window, and picking each checkpoint key's newest object version from one listing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from archiver.ledger.verify import (
    FindingKind,
    _check_listing,
    _Scan,
    _stored_checkpoints,
)
from archiver.ledger.verify_objects import Expect
from archiver.store.port import VersionEntry

SNAPSHOT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUTOFF = SNAPSHOT - timedelta(seconds=300)


class _Log:
    prefix = "log/"
    origin = "test/log"


def _row(key: str, vid: str, at: datetime | None, marker: bool = False) -> VersionEntry:
    return VersionEntry(key, vid, marker, True, 1, at)


def _scan() -> _Scan:
    scan = _Scan()
    scan.objects[("records/a", "v1")] = Expect("00" * 32, 1, None)
    scan.keys.add("records/a")
    return scan


def _kinds(rows: list[VersionEntry]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    found, pending = _check_listing(_Log(), _scan(), "records/", rows, CUTOFF)
    return [(f.kind.value, f.key or "") for f in found], [(p.kind, p.key or "") for p in pending]


def test_young_unlogged_version_of_an_unnamed_key_is_pending() -> None:
    young = SNAPSHOT - timedelta(seconds=10)
    assert _kinds([_row("records/a", "v1", young), _row("records/b", "v9", young)]) == (
        [],
        [(FindingKind.PENDING, "records/b")],
    )


def test_written_after_the_snapshot_is_pending_too() -> None:
    later = SNAPSHOT + timedelta(seconds=5)
    assert _kinds([_row("records/b", "v9", later)])[1] == [(FindingKind.PENDING, "records/b")]


def test_older_than_the_window_is_a_finding() -> None:
    old = CUTOFF - timedelta(seconds=1)
    assert _kinds([_row("records/b", "v9", old)]) == ([("object:extra_version", "records/b")], [])


def test_unknown_age_is_a_finding() -> None:
    assert _kinds([_row("records/b", "v9", None)])[0] == [("object:extra_version", "records/b")]


def test_naive_time_is_read_as_utc() -> None:
    young = (SNAPSHOT - timedelta(seconds=10)).replace(tzinfo=None)
    assert _kinds([_row("records/b", "v9", young)])[1] == [(FindingKind.PENDING, "records/b")]


def test_extra_version_of_a_logged_key_is_a_finding_however_young() -> None:
    young = SNAPSHOT - timedelta(seconds=1)
    rows = [_row("records/a", "v2", young), _row("records/a", "v1", young)]
    assert _kinds(rows) == ([("object:extra_version", "records/a")], [])


def test_delete_marker_is_a_finding_however_young() -> None:
    rows = [_row("records/b", "m1", SNAPSHOT, marker=True)]
    assert _kinds(rows) == ([("object:delete_marker", "records/b")], [])


class _Listing:
    name = "listing"

    def __init__(self, rows: list[VersionEntry]) -> None:
        self.rows = rows
        self.calls: list[str] = []

    def list_versions(self, prefix: str = "") -> Iterator[VersionEntry]:
        self.calls.append(prefix)
        return iter([r for r in self.rows if r.key.startswith(prefix)])


def test_stored_checkpoints_from_one_listing() -> None:
    t = SNAPSHOT
    store = _Listing(
        [
            _row("log/checkpoint/001", "m", t, marker=True),  # latest is a marker: skipped
            _row("log/checkpoint/001", "a", t),
            _row("log/checkpoint/002", "new", t),  # newest version of the key
            _row("log/checkpoint/002", "old", t),
            _row("log/checkpoint/003", "b", t),
            _row("log/checkpoint/003", "m2", t, marker=True),  # an older marker
            _row("log/checkpoint/notes", "c", t),  # not a size
        ]
    )
    got = _stored_checkpoints(_Log(), store)  # type: ignore[arg-type]  # only list_versions
    assert [(c.key, c.version_id, c.size) for c in got] == [
        ("log/checkpoint/002", "new", 2),
        ("log/checkpoint/003", "b", 3),
    ]
    assert store.calls == ["log/checkpoint/"]
