"""The grace window of live verification, on the local store and on real MinIO.

An object stored a moment before its leaf is appended (an in-flight record or audit batch)
is *pending* while it is younger than ``grace`` seconds before the log snapshot verify
reads; an older one, or any unlogged version of a key the log already names, is a finding.
A checkpoint signed after the snapshot is pending too; a stale one is a finding.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer
from archiver.ledger.verify import FindingKind, verify_archive
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore
from archiver.store.state_sqlite import SqliteStateStore
from tests.support.apps import settings_env
from tests.support.cli import findings, run_cli
from tests.support.retention import Msg, app_on, deliver, now, s3_overrides

pytestmark = pytest.mark.integration

ORIGIN = "archive.test/grace"


def _retention() -> Retention:
    return Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1))


@dataclass
class Log:
    objects: ObjectStore
    state: StateStore
    log: TransparencyLog
    signer: Signer
    root: Path | None  # local store folder (None on MinIO)


@pytest.fixture(params=["local", "s3"])
def logged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    objects: ObjectStore
    state: StateStore
    root: Path | None = None
    if request.param == "local":
        root = tmp_path / "objects"
        objects, state = LocalObjectStore(root), SqliteStateStore(tmp_path / "state.db")
    else:
        from archiver.store._s3common import make_client
        from archiver.store.s3 import S3ObjectStore, create_locked_bucket
        from archiver.store.state_s3 import S3StateStore

        s3 = request.getfixturevalue("s3_endpoint")
        client = make_client(s3["endpoint"], s3["access_key"], s3["secret_key"], secure=False)
        bucket, sbucket = f"grace-{uuid.uuid4().hex[:12]}", f"grace-st-{uuid.uuid4().hex[:12]}"
        create_locked_bucket(client, bucket)
        s3_state = S3StateStore(client, sbucket)
        s3_state.ensure_bucket()
        objects, state = S3ObjectStore(client, bucket), s3_state
    log = TransparencyLog(objects, state, ORIGIN, _retention)
    put = objects.put("records/aa/logged", b"logged record", retention=_retention())
    log.append(
        [
            make_entry(
                EntryKind.RECORD,
                time=datetime.now(UTC),
                key=put.key,
                version_id=put.version_id,
                sha256=put.sha256,
                size=put.size,
            ).data
        ]
    )
    signer = Signer.generate(ORIGIN)
    CheckpointSigner(log, signer, objects, state).sign_if_grown()
    yield Log(objects, state, log, signer, root)


def _age_local_version(root: Path, key: str, version_id: str, by: timedelta) -> None:
    """Move a local version's last-modified time back (its metadata file)."""
    path = root / "objects" / key / "@v" / f"{version_id}.json"
    meta = json.loads(path.read_bytes())
    meta["created"] = (datetime.fromisoformat(meta["created"]) - by).isoformat()
    path.chmod(0o644)
    path.write_text(json.dumps(meta))


def test_fresh_unlogged_object_is_pending_old_one_is_a_finding(logged: Log) -> None:
    put = logged.objects.put("records/bb/in-flight", b"no leaf yet", retention=_retention())
    result = verify_archive(logged.log, logged.objects, [logged.signer.verifier], grace=300)
    assert result.findings == []
    assert [(p.kind, p.key, p.version_id) for p in result.pending] == [
        (FindingKind.PENDING, put.key, put.version_id)
    ]
    if logged.root is not None:
        # Older than the window: a finding, with the same default grace.
        _age_local_version(logged.root, put.key, put.version_id, timedelta(minutes=10))
        aged = verify_archive(logged.log, logged.objects, [logged.signer.verifier], grace=300)
        assert aged.pending == []
    else:
        # S3 last-modified cannot be moved back: a grace of 0 puts it outside the window.
        aged = verify_archive(logged.log, logged.objects, [logged.signer.verifier], grace=0)
    assert [(f.kind, f.key, f.version_id) for f in aged.findings] == [
        (FindingKind.EXTRA_VERSION, put.key, put.version_id)
    ]


def test_unlogged_version_of_a_logged_key_is_never_pending(logged: Log) -> None:
    # Keys are write-once: a second version of a logged key is tampering, however young.
    key = "records/aa/logged"
    if logged.root is not None:
        from archiver.store.local import new_version_id

        vdir = logged.root / "objects" / key / "@v"
        first = next(vdir.glob("*.json"))
        meta = json.loads(first.read_bytes())
        vid = new_version_id()
        meta.update(version_id=vid)
        (vdir / f"{vid}.data").write_bytes(b"logged record")
        (vdir / f"{vid}.json").write_text(json.dumps(meta))
    else:
        import io

        client = logged.objects._client  # type: ignore[attr-defined]  # raw client
        bucket = logged.objects._bucket  # type: ignore[attr-defined]  # raw bucket
        vid = client.put_object(bucket, key, io.BytesIO(b"x"), 1).version_id
    result = verify_archive(logged.log, logged.objects, [logged.signer.verifier], grace=3600)
    assert result.pending == []
    assert [(f.kind, f.key, f.version_id) for f in result.findings] == [
        (FindingKind.EXTRA_VERSION, key, vid)
    ]


class _EarlierSnapshot:
    """The log as a verify run saw it just before more entries and a checkpoint landed."""

    def __init__(self, log: TransparencyLog, size: int, root: bytes) -> None:
        self._log, self._size, self._root = log, size, root
        self.prefix, self.origin = log.prefix, log.origin

    def snapshot(self) -> tuple[int, bytes]:
        return self._size, self._root

    def entries(self, start: int, end: int, tree_size: int | None = None) -> list[bytes]:
        return self._log.entries(start, end, tree_size)

    def tile_hashes(self, level: int, index: int, tree_size: int | None = None) -> list[bytes]:
        return self._log.tile_hashes(level, index, tree_size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return self._log.consistency_proof(old_size, new_size)


def test_checkpoint_signed_after_the_snapshot_is_pending(logged: Log) -> None:
    size, root = logged.log.snapshot()
    logged.log.append([make_entry(EntryKind.VERIFY_RUN, time=datetime.now(UTC), n=1).data])
    signed = CheckpointSigner(
        logged.log, logged.signer, logged.objects, logged.state
    ).sign_if_grown()
    # The new tree also holds the entry naming the previous checkpoint.
    assert signed is not None and signed.checkpoint.size == logged.log.size() > size + 1
    reader = _EarlierSnapshot(logged.log, size, root)
    live = verify_archive(reader, logged.objects, [logged.signer.verifier], grace=300)
    assert live.findings == []
    assert [p.found for p in live.pending] == [str(signed.checkpoint.size)]
    key = live.pending[0].key or ""
    assert key == signed.key
    stale = verify_archive(reader, logged.objects, [logged.signer.verifier], grace=0)
    assert [f.kind for f in stale.findings] == [FindingKind.CHECKPOINT_INCONSISTENT]


@pytest.mark.parametrize("backend", ["embedded", "servers"])
def test_cli_grace_option(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    overrides: dict[str, Any] = {"inline_workers": False}
    if backend == "servers":
        overrides = s3_overrides(request.getfixturevalue("s3_endpoint"))
    with app_on(tmp_path, **overrides) as (client, rt):
        deliver(client, rt, [Msg("447700900077", "hello", now())])  # the log names records/
        rt.audit.flush()
        rt.checkpoints.sign_if_grown()
        put = rt.objects.put("records/cc/in-flight", b"{}", retention=_retention())
        env = settings_env(rt.settings)
        live = run_cli(env, "verify", "--json")
        assert live.returncode == 0, live.stdout + live.stderr
        assert ("object:pending", put.key) in {(f["kind"], f["key"]) for f in findings(live)}
        assert "1 pending" in live.stderr
        strict = run_cli(env, "verify", "--json", "--grace", "0")
        assert strict.returncode == 1, strict.stdout + strict.stderr
        assert ("object:extra_version", put.key) in {
            (f["kind"], f["key"]) for f in findings(strict)
        }
