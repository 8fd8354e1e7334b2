"""The working area on both backends: streamed writes and reads with flat memory, atomic
appearance, private files, and a refused locked / versioned / evidence bucket."""

from __future__ import annotations

import hashlib
import io
import stat
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio.commonconfig import ENABLED
from minio.versioningconfig import VersioningConfig

from archiver.jobs.setup import open_workarea
from archiver.jobs.workarea import (
    PART_SIZE,
    ArtifactRef,
    LocalWorkArea,
    S3WorkArea,
    WorkArea,
    check_key,
)
from archiver.store._s3common import make_client
from archiver.store.errors import BucketMisconfigured, ObjectNotFound, StoreError
from archiver.store.s3 import create_locked_bucket
from tests.integration.jobs.conftest import MakeSettings
from tests.support.apps import embedded_settings

MB = 1024 * 1024


def generated(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of a deterministic pattern, made on the fly."""
    block = bytes(range(256)) * (chunk // 256)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece


def _write_peak(area: WorkArea, key: str, total: int) -> tuple[ArtifactRef, int]:
    tracemalloc.start()
    try:
        ref = area.write(key, generated(total), content_type="application/zip", subjects=["p1"])
        return ref, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fifty_mb_artifact_streams_in_and_out_with_flat_memory(
        make_settings: MakeSettings) -> None:
    area = open_workarea(make_settings())
    area.ensure()
    total = 50 * MB
    expected = hashlib.sha256()
    for piece in generated(total):
        expected.update(piece)

    _, small_peak = _write_peak(area, "export/job-small/package.zip", 3 * PART_SIZE)
    ref, write_peak = _write_peak(area, "export/job-big/package.zip", total)
    tracemalloc.start()
    try:
        got, size = hashlib.sha256(), 0
        for chunk in area.read(ref.key):
            got.update(chunk)
            size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ref.size == size == total
    assert ref.sha256 == got.hexdigest() == expected.hexdigest()
    # Flat: twice the data costs no more than about a part more (S3 parts are
    # PART_SIZE; minio-py copies a part a few times while signing and sending it), and
    # far less than the artifact.
    print(f"write peak 24 MB: {small_peak / MB:.1f} MB, 50 MB: {write_peak / MB:.1f} MB, "
          f"read peak: {read_peak / MB:.2f} MB")
    assert write_peak - small_peak < PART_SIZE, (small_peak, write_peak)
    assert write_peak < 5 * PART_SIZE < total, write_peak
    assert read_peak < 2 * MB, read_peak
    assert area.stat(ref.key) == ref


def test_write_from_a_file_replaces_and_lists(make_settings: MakeSettings) -> None:
    area = open_workarea(make_settings())
    area.ensure()
    first = area.write("report/job-1/r.pdf", io.BytesIO(b"%PDF-old"), subjects=["b", "a"])
    assert first.subjects == ("a", "b")
    second = area.write("report/job-1/r.pdf", io.BytesIO(b"%PDF-new"))
    assert b"".join(area.read(second.key)) == b"%PDF-new"
    assert [r.key for r in area.list("report/")] == ["report/job-1/r.pdf"]
    area.delete(second.key)
    assert area.stat(second.key) is None
    with pytest.raises(ObjectNotFound):
        b"".join(area.read(second.key))
    area.delete(second.key)  # missing is fine


def test_a_failed_write_leaves_no_artifact(make_settings: MakeSettings) -> None:
    area = open_workarea(make_settings())
    area.ensure()

    def broken() -> Iterator[bytes]:
        yield b"a" * MB
        raise RuntimeError("the package writer failed")

    with pytest.raises(RuntimeError):
        area.write("export/job-x/p.zip", broken())
    assert area.stat("export/job-x/p.zip") is None
    with pytest.raises(ObjectNotFound):
        b"".join(area.read("export/job-x/p.zip"))


@pytest.mark.parametrize("key", ["../x", "a/../b", ".hidden/x", "a//b", "a/b.meta.json", ""])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(StoreError):
        check_key(key)


def test_random_job_ids_are_valid_keys() -> None:
    assert check_key("export/_9kefG7o-/a.bin") == "export/_9kefG7o-/a.bin"


def test_local_area_is_private(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    area = open_workarea(settings)
    assert isinstance(area, LocalWorkArea)
    area.ensure()
    area.write("export/j1/p.zip", iter([b"secret"]))
    assert stat.S_IMODE(area.root.stat().st_mode) == 0o700
    assert stat.S_IMODE((area.root / "export" / "j1" / "p.zip").stat().st_mode) == 0o600
    assert area.root == settings.data_dir / "workarea"
    assert not (settings.data_dir / "evidence" / "export").exists()


def _s3(s3_endpoint: dict[str, str]) -> tuple[object, str]:
    client = make_client(s3_endpoint["endpoint"], s3_endpoint["access_key"],
                         s3_endpoint["secret_key"], secure=False)
    return client, f"wk-{uuid.uuid4().hex[:12]}"


def test_s3_area_is_created_plain(s3_endpoint: dict[str, str]) -> None:
    client, bucket = _s3(s3_endpoint)
    area = S3WorkArea(client, bucket)  # type: ignore[arg-type]  # a Minio client
    area.ensure()
    area.ensure()  # idempotent
    assert client.bucket_exists(bucket)  # type: ignore[attr-defined]


def test_s3_area_gets_a_lifecycle_backstop(make_settings: MakeSettings) -> None:
    area = open_workarea(make_settings(workarea_expiry_days=7))
    if isinstance(area, LocalWorkArea):  # the embedded area has the sweep alone
        assert not hasattr(area, "lifecycle_days")
        return
    assert isinstance(area, S3WorkArea)
    area.ensure()
    assert area.lifecycle_days() == 8  # a day after the sweep's 7
    area.backstop_days = 31  # the setting changed: the next start updates the rule
    area.ensure()
    assert area.lifecycle_days() == 31


def test_s3_area_refuses_a_locked_bucket(s3_endpoint: dict[str, str]) -> None:
    client, bucket = _s3(s3_endpoint)
    create_locked_bucket(client, bucket)  # type: ignore[arg-type]
    with pytest.raises(BucketMisconfigured, match="Object Lock"):
        S3WorkArea(client, bucket).ensure()  # type: ignore[arg-type]


def test_s3_area_refuses_a_versioned_bucket(s3_endpoint: dict[str, str]) -> None:
    client, bucket = _s3(s3_endpoint)
    client.make_bucket(bucket)  # type: ignore[attr-defined]
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))  # type: ignore[attr-defined]
    with pytest.raises(BucketMisconfigured, match="versioned"):
        S3WorkArea(client, bucket).ensure()  # type: ignore[arg-type]


def test_s3_area_refuses_the_evidence_and_state_buckets(s3_endpoint: dict[str, str]) -> None:
    client, _ = _s3(s3_endpoint)
    with pytest.raises(BucketMisconfigured, match="evidence"):
        S3WorkArea(client, "wa-evidence", evidence_bucket="wa-evidence")  # type: ignore[arg-type]
    with pytest.raises(BucketMisconfigured, match="state"):
        S3WorkArea(client, "wa-state", evidence_bucket="wa-evidence",  # type: ignore[arg-type]
                   state_bucket="wa-state")


def test_settings_pointing_the_area_at_the_state_bucket_are_refused(
        s3_endpoint: dict[str, str], tmp_path: Path) -> None:
    settings = embedded_settings(
        tmp_path, store="s3", s3_endpoint=s3_endpoint["endpoint"],
        s3_access_key=s3_endpoint["access_key"], s3_secret_key=s3_endpoint["secret_key"],
        state_bucket="st-same", workarea_bucket="st-same")
    with pytest.raises(BucketMisconfigured):
        open_workarea(settings)


def test_s3_write_holds_one_copy_of_a_part_fewer(s3_endpoint: dict[str, str]) -> None:
    """The streamed upload's reader hands minio each part with one copy, not a slice
    and then its copy: the export's peak RSS is at its upload (issue 11, bench)."""
    client, bucket = _s3(s3_endpoint)
    area = S3WorkArea(client, bucket)  # type: ignore[arg-type]  # a Minio client
    area.ensure()
    ref, peak = _write_peak(area, "export/job-peak/package.zip", 3 * PART_SIZE)
    assert ref.size == 3 * PART_SIZE
    # Measured: 4.07 parts before (the slice's copy), 3.08 after (our buffer, the part,
    # and minio's own copy while it strips its one-byte lookahead).
    assert peak < 3.5 * PART_SIZE, peak / PART_SIZE
    area.delete(ref.key)
