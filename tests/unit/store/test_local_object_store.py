"""Local evidence store specifics: on-disk layout, read-only files, frozen-clock retention,
several processes racing on one folder."""

from __future__ import annotations

import multiprocessing
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.store.errors import ObjectExists, ObjectLocked, StoreError
from archiver.store.local import VERSIONS_DIR, LocalObjectStore, new_version_id
from archiver.store.port import LockMode, Retention

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_layout_and_read_only_files(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    res = store.put("raw/2030/a.json", b"{}", retention=Retention(LockMode.COMPLIANCE, T0))
    vdir = tmp_path / "objects" / "raw" / "2030" / "a.json" / VERSIONS_DIR
    data = vdir / f"{res.version_id}.data"
    meta = vdir / f"{res.version_id}.json"
    assert data.read_bytes() == b"{}"
    assert stat.S_IMODE(data.stat().st_mode) == 0o444
    assert stat.S_IMODE(meta.stat().st_mode) == 0o444
    assert not [p for p in vdir.iterdir() if p.name.startswith(".tmp-")]


def test_retention_with_frozen_clock_both_modes(tmp_path: Path):
    clock = FrozenClock(T0)
    store = LocalObjectStore(tmp_path, now=clock)
    until = T0 + timedelta(days=365)
    gov = store.put("g", b"g", retention=Retention(LockMode.GOVERNANCE, until))
    comp = store.put("c", b"c", retention=Retention(LockMode.COMPLIANCE, until))
    clock.now = until - timedelta(seconds=1)
    for key, res in (("g", gov), ("c", comp)):  # no governance bypass exists here
        with pytest.raises(ObjectLocked):
            store.delete_version(key, res.version_id)
    clock.now = until
    store.delete_version("g", gov.version_id)
    store.delete_version("c", comp.version_id)
    assert list(store.list_versions("")) == []


def test_deleted_key_still_refuses_new_writes_only_while_versions_remain(tmp_path: Path):
    clock = FrozenClock(T0)
    store = LocalObjectStore(tmp_path, now=clock)
    res = store.put("k", b"1", retention=Retention(LockMode.COMPLIANCE, T0))
    with pytest.raises(ObjectExists):
        store.put("k", b"2", retention=Retention(LockMode.COMPLIANCE, T0))
    store.delete_version("k", res.version_id)
    # Every version is gone (S3 behaves the same): the key may be written again.
    store.put("k", b"3", retention=Retention(LockMode.COMPLIANCE, T0))


@pytest.mark.parametrize("key", ["", "/a", "a//b", "a/../b", "./a", "a/@v/x", "@a"])
def test_invalid_keys_are_refused(tmp_path: Path, key: str):
    store = LocalObjectStore(tmp_path)
    with pytest.raises(StoreError):
        store.put(key, b"x", retention=Retention(LockMode.COMPLIANCE, T0))


def test_version_ids_are_unique_and_sortable():
    ids = [new_version_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def _race_put(root: str, key: str, start: object, results: object) -> None:
    store = LocalObjectStore(Path(root))
    start.wait()  # type: ignore[attr-defined]
    try:
        res = store.put(
            key, f"pid{os.getpid()}".encode(), retention=Retention(LockMode.COMPLIANCE, T0)
        )
        results.put(("won", res.version_id))  # type: ignore[attr-defined]
    except ObjectExists:
        results.put(("lost", ""))  # type: ignore[attr-defined]


def test_several_processes_one_key_exactly_one_wins(tmp_path: Path):
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_put, args=(str(tmp_path), f"race/{r}", start, results))
        for r in range(3)
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(1 for o in outcomes if o[0] == "won") == 3
    store = LocalObjectStore(tmp_path)
    for r in range(3):
        assert len(list(store.list_versions(f"race/{r}"))) == 1


def test_new_date_folders_are_fsynced_up_to_the_store_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 #18: a power loss must not lose an acknowledged batch because the name of
    a freshly created ``raw/YYYY/MM/DD/<id>`` folder was never flushed into its parent.
    Every directory that gains a new entry is fsynced, from the store root down."""
    store = LocalObjectStore(tmp_path)
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    key = "raw/2030/01/02/20300102T000000.000000Z-abc"
    store.put(key, b"x", retention=Retention(LockMode.COMPLIANCE, T0))
    objects = tmp_path.resolve() / "objects"
    # Each new folder's parent: objects/raw ... objects/raw/2030/01/02/<id> (parent of @v).
    parents = [objects, *(objects.joinpath(*key.split("/")[:n]) for n in range(1, 6))]
    for parent in parents:
        assert str(parent) in synced, (parent, synced)
    # And in order: a parent is flushed before anything below it.
    order = [synced.index(str(p)) for p in parents]
    assert order == sorted(order)
    # A second object in the same day folder creates only its own folder.
    synced.clear()
    store.put(key + "-2", b"y", retention=Retention(LockMode.COMPLIANCE, T0))
    assert str(objects.joinpath(*key.split("/")[:4])) in synced


def test_a_fresh_store_root_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    LocalObjectStore(tmp_path / "new" / "root")
    assert str(tmp_path.resolve()) in synced
    assert str((tmp_path / "new" / "root").resolve()) in synced
