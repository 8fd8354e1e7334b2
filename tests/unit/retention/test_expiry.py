"""The pure fold behind disposition's candidates (archiver.retention.expiry): latest logged
retain-until per version, extensions, disposed versions, redo after a crash, chunked reads."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from archiver.ledger.entry import EntryKind, make_entry
from archiver.retention.expiry import (
    Candidates,
    candidates,
    fold,
    leaf_runs,
    log_entries,
    record_refs,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=1)
FUTURE = NOW + timedelta(days=1)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def obj(kind: EntryKind, key: str, version: str = "v1", until: datetime | None = PAST) -> bytes:
    return make_entry(kind, time=NOW - timedelta(days=9), key=key, version_id=version,
                      sha256=_sha(key + version), size=10, retain_until=until).data


def extended(key: str, until: datetime, version: str = "v1") -> bytes:
    return make_entry(EntryKind.RETENTION_EXTENDED, time=NOW - timedelta(days=2), key=key,
                      version_id=version, retain_until=until).data


def disposed(key: str, kind: str = "record", version: str = "v1") -> bytes:
    return make_entry(EntryKind.DISPOSED, time=NOW - timedelta(hours=1), key=key,
                      version_id=version, sha256=_sha(key), size=10, object_kind=kind).data


def audit() -> bytes:
    return make_entry(EntryKind.AUDIT, time=NOW, key="audit/x", version_id="a",
                      sha256=_sha("audit"), size=1, retain_until=PAST).data


def keys_of(found: Candidates, *, redo: bool | None = None) -> set[str]:
    return {c.key for c in found.versions if redo is None or c.redo == redo}


def run(entries: list[bytes], redo_since: int | None = None) -> Candidates:
    return fold(enumerate(entries), NOW, redo_since=redo_since, log_size=len(entries))


def test_expired_versions_of_the_three_kinds_are_candidates_locked_ones_are_not() -> None:
    found = run([
        obj(EntryKind.RECORD, "records/aa/old"),
        obj(EntryKind.RECORD, "records/bb/new", until=FUTURE),
        obj(EntryKind.RAW, "raw/2030/01/01/b1"), obj(EntryKind.MEDIA, "media/m1"),
        obj(EntryKind.RECORD, "records/cc/nodate", until=None), audit(),
    ])  # fmt: skip
    assert keys_of(found) == {"records/aa/old", "raw/2030/01/01/b1", "media/m1",
                              "records/cc/nodate"}
    kinds = {c.key: c.kind for c in found.versions}
    assert kinds["raw/2030/01/01/b1"] == "raw" and kinds["media/m1"] == "media"
    assert found.locked == 1
    nodate = next(c for c in found.versions if c.key == "records/cc/nodate")
    assert nodate.retain_until is None  # no date logged: the store decides


def test_a_retention_extended_leaf_keeps_a_version_out() -> None:
    found = run([
        obj(EntryKind.RECORD, "records/aa/x"), obj(EntryKind.RECORD, "records/bb/y"),
        obj(EntryKind.RAW, "raw/b"),
        extended("records/aa/x", FUTURE),
        extended("records/bb/y", PAST + timedelta(hours=3)),  # longer, but passed too
        extended("raw/b", FUTURE),
    ])  # fmt: skip
    assert keys_of(found) == {"records/bb/y"}
    (y,) = found.versions
    assert y.retain_until == PAST + timedelta(hours=3)
    assert found.locked == 2


def test_an_extension_before_its_objects_leaf_only_costs_a_stat() -> None:
    # Out of order (the lock lengthened between the write and the leaf): the fold keeps the
    # version as a candidate rather than remember every extension; disposition stats it.
    found = run([extended("records/aa/x", FUTURE), obj(EntryKind.RECORD, "records/aa/x")])
    assert keys_of(found) == {"records/aa/x"}


def test_a_replayed_leaf_keeps_the_later_date() -> None:
    found = run([obj(EntryKind.RECORD, "records/a", until=FUTURE),
                 obj(EntryKind.RECORD, "records/b", until=PAST - timedelta(days=3)),
                 obj(EntryKind.RECORD, "records/b", until=PAST)])
    assert keys_of(found) == {"records/b"}
    assert found.versions[0].retain_until == PAST


def test_disposed_versions_drop_out_and_recent_ones_come_back_as_redo() -> None:
    entries = [
        obj(EntryKind.RECORD, "records/a"), obj(EntryKind.RECORD, "records/b"),
        obj(EntryKind.MEDIA, "media/m"), obj(EntryKind.RECORD, "records/c", version="v2"),
        disposed("records/a"),  # index 4: before the cursor
        disposed("records/b"), disposed("media/m", "media"),  # 5, 6: after it
    ]  # fmt: skip
    plain = run(entries)
    assert keys_of(plain) == {"records/c"}
    again = run(entries, redo_since=5)
    assert keys_of(again, redo=False) == {"records/c"}
    assert keys_of(again, redo=True) == {"records/b", "media/m"}
    media = next(c for c in again.versions if c.key == "media/m")
    assert media.kind == "media" and media.version_id == "v1"
    assert keys_of(run(entries, redo_since=7)) == {"records/c"}


def test_other_versions_of_one_key_are_separate() -> None:
    found = run([obj(EntryKind.RECORD, "records/a", "v1"),
                 obj(EntryKind.RECORD, "records/a", "v2"), disposed("records/a", version="v1")])
    assert [(c.key, c.version_id) for c in found.versions] == [("records/a", "v2")]


class ListLog:
    """An in-memory log with the TransparencyLog read interface; records each read."""

    def __init__(self, entries: list[bytes]) -> None:
        self.items = entries
        self.reads: list[tuple[int, int]] = []

    def size(self) -> int:
        return len(self.items)

    def entries(self, start: int, end: int) -> list[bytes]:
        self.reads.append((start, end))
        return self.items[start:end]


def test_the_log_is_read_in_chunks_and_gives_the_same_answer() -> None:
    entries = []
    for i in range(50):
        entries.append(obj(EntryKind.RECORD, f"records/{i:02d}", until=PAST if i % 7 else FUTURE))
        entries.append(audit())
    entries.append(extended("records/01", FUTURE))
    log = ListLog(entries)
    chunked = candidates(log, NOW, chunk=8)
    assert max(end - start for start, end in log.reads) == 8
    assert log.reads[0] == (0, 8) and log.reads[-1][1] == len(entries)
    assert chunked == candidates(ListLog(entries), NOW)
    expected = {f"records/{i:02d}" for i in range(50) if i % 7} - {"records/01"}
    assert keys_of(chunked) == expected and chunked.log_size == len(entries)
    assert [i for i, _ in log_entries(ListLog(entries), end=5, chunk=2)] == [0, 1, 2, 3, 4]


def test_batch_helpers() -> None:
    assert leaf_runs([5, 3, 4, 9, 10, 4]) == [(3, 6), (9, 11)]
    assert leaf_runs([]) == []
    refs = record_refs([obj(EntryKind.RAW, "raw/b"), obj(EntryKind.RECORD, "records/a", "v9"),
                        obj(EntryKind.RECORD, "records/b"), audit()])
    assert refs == {("records/a", "v9"), ("records/b", "v1")}
