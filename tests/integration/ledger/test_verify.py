"""verify_archive on a real archive: clean → no findings; each kind of tampering through the
raw store (not our adapter's API) → a finding that names the key and version."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from backends import ORIGIN, open_log, open_stores

from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer
from archiver.ledger.verify import Finding, FindingKind, verify_archive
from archiver.store.local import new_version_id, write_delete_marker
from archiver.store.port import LockMode, ObjectStore, Retention

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Archive:
    cfg: dict[str, Any]
    objects: ObjectStore
    log: TransparencyLog
    signer: Signer
    versions: dict[str, str]  # key -> version id


def _raw_client(cfg: dict[str, Any]) -> Any:
    from minio import Minio

    return Minio(cfg["endpoint"], cfg["access_key"], cfg["secret_key"], secure=False)


@pytest.fixture
def archive(backend: dict[str, Any]) -> Archive:
    objects, state = open_stores(backend)
    log = open_log(backend)
    long = Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1))
    short = Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(seconds=1))
    versions: dict[str, str] = {}
    entries = []
    for name in ("a", "b", "held", "gone", "disposed"):
        key = f"records/{name}.json"
        data = json.dumps({"record": name, "body": "x" * 50}).encode()
        ret = short if name in ("gone", "disposed") else long
        put = objects.put(key, data, retention=ret)
        versions[key] = put.version_id
        entries.append(
            make_entry(
                EntryKind.RECORD,
                time=T0,
                key=key,
                version_id=put.version_id,
                sha256=put.sha256,
                size=put.size,
                retain_until=ret.retain_until,
            ).data
        )
    held = "records/held.json"
    objects.set_legal_hold(held, versions[held], True)
    entries.append(
        make_entry(
            EntryKind.HOLD_PLACED, time=T0, key=held, version_id=versions[held], case="case-1"
        ).data
    )
    time.sleep(1.3)  # let the short retention lapse, then dispose one the legitimate way
    disp = "records/disposed.json"
    objects.delete_version(disp, versions[disp])
    entries.append(
        make_entry(EntryKind.DISPOSED, time=T0, key=disp, version_id=versions[disp]).data
    )
    log.append(entries[:3])
    log.append(entries[3:])
    signer = Signer.generate(ORIGIN)
    cps = CheckpointSigner(log, signer, objects, state)
    cps.sign_if_grown()
    log.append([make_entry(EntryKind.VERIFY_RUN, time=T0, result="ok").data])
    cps.sign_if_grown()
    return Archive(backend, objects, log, signer, versions)


def _verify(a: Archive) -> list[Finding]:
    return verify_archive(a.log, a.objects, [a.signer.verifier], concurrency=4).findings


def test_clean_archive_has_no_findings(archive: Archive) -> None:
    assert _verify(archive) == []


def _names(findings: list[Finding], kind: FindingKind, key: str, vid: str | None) -> bool:
    return any(
        f.kind == kind and f.key == key and (vid is None or f.version_id == vid) for f in findings
    )


def _local_vdir(a: Archive, key: str) -> Path:
    return Path(a.cfg["root"]) / "objects" / key / "@v"


def test_changed_byte(archive: Archive) -> None:
    key = "records/a.json"
    vid = archive.versions[key]
    if archive.cfg["kind"] == "s3":
        # S3 versions are immutable: changing a byte can only add a new version.
        raw = _raw_client(archive.cfg)
        data = bytearray(raw.get_object(archive.cfg["bucket"], key, version_id=vid).read())
        data[5] ^= 1
        new = raw.put_object(archive.cfg["bucket"], key, io.BytesIO(bytes(data)), len(data))
        f = _verify(archive)
        assert _names(f, FindingKind.EXTRA_VERSION, key, new.version_id)
        assert not _names(f, FindingKind.HASH_MISMATCH, key, None)  # reads go by version id
        return
    path = _local_vdir(archive, key) / f"{vid}.data"
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    f = _verify(archive)
    assert _names(f, FindingKind.HASH_MISMATCH, key, vid)


def test_deleted_version(archive: Archive) -> None:
    key = "records/gone.json"
    vid = archive.versions[key]
    if archive.cfg["kind"] == "s3":
        _raw_client(archive.cfg).remove_object(archive.cfg["bucket"], key, version_id=vid)
    else:
        for suffix in (".json", ".data"):
            (_local_vdir(archive, key) / f"{vid}{suffix}").unlink()
    assert _names(_verify(archive), FindingKind.OBJECT_MISSING, key, vid)


def test_delete_marker(archive: Archive) -> None:
    key = "records/b.json"
    if archive.cfg["kind"] == "s3":
        _raw_client(archive.cfg).remove_object(archive.cfg["bucket"], key)
    else:
        write_delete_marker(Path(archive.cfg["root"]), key)
    f = _verify(archive)
    assert _names(f, FindingKind.DELETE_MARKER, key, None)
    assert not _names(f, FindingKind.OBJECT_MISSING, key, None)  # reads go by version id


def test_extra_version(archive: Archive) -> None:
    key = "records/a.json"
    data = b"forged"
    if archive.cfg["kind"] == "s3":
        vid = (
            _raw_client(archive.cfg)
            .put_object(archive.cfg["bucket"], key, io.BytesIO(data), len(data))
            .version_id
        )
    else:
        vdir = _local_vdir(archive, key)
        meta = json.loads((vdir / f"{archive.versions[key]}.json").read_bytes())
        vid = new_version_id()
        meta.update(
            version_id=vid, sha256=hashlib.sha256(data).hexdigest(), size=len(data), retention=None
        )
        (vdir / f"{vid}.data").write_bytes(data)
        (vdir / f"{vid}.json").write_text(json.dumps(meta))
    assert _names(_verify(archive), FindingKind.EXTRA_VERSION, key, vid)


def test_removed_hold(archive: Archive) -> None:
    key = "records/held.json"
    vid = archive.versions[key]
    archive.objects.set_legal_hold(key, vid, False)
    f = _verify(archive)
    assert _names(f, FindingKind.HOLD_MISMATCH, key, vid)
    assert [x.expected for x in f if x.kind == FindingKind.HOLD_MISMATCH] == ["True"]


def test_disposed_but_present(archive: Archive) -> None:
    key = "records/b.json"
    vid = archive.versions[key]
    archive.log.append([make_entry(EntryKind.DISPOSED, time=T0, key=key, version_id=vid).data])
    assert _names(_verify(archive), FindingKind.DISPOSED_PRESENT, key, vid)


def test_checkpoint_signed_by_unknown_key(archive: Archive) -> None:
    other = Signer.generate(ORIGIN)
    f = verify_archive(archive.log, archive.objects, [other.verifier]).findings
    assert {x.kind for x in f} == {FindingKind.CHECKPOINT_INVALID}
    assert all(x.key and x.key.startswith("log/checkpoint/") and x.version_id for x in f)


def test_sampled_verify(archive: Archive) -> None:
    assert (
        verify_archive(archive.log, archive.objects, [archive.signer.verifier], sample=1).findings
        == []
    )
