"""``archiver verify`` against every object kind on both stores (local folder, real MinIO).

One archive per store is built through the real flows: webhook deliveries (raw captures,
records), image messages fetched from FakeMeta by the media worker (media objects),
GDPR erasures (tombstones), audit batches, signed checkpoints and log tiles. Each of five
tamperings then hits its own object of every kind: a changed byte, a deleted version, a
delete marker, a reverted version (another version written over it) and a removed legal
hold. ``archiver verify`` must exit 1 and name every (kind of finding, key). On MinIO a
locked version can only be deleted with GOVERNANCE bypass (the tests run GOVERNANCE).

Signed checkpoints get the same treatment (each but the newest is a logged object, named
by the next signing), plus a deleted version of the newest one, which only the signer's
pointer names. Not covered (and why): a legal hold on a checkpoint or a tile (nothing
places or logs one).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.audit import SYSTEM, AuditAction
from archiver.auth import Role
from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.runtime import Runtime
from archiver.store.local import new_version_id, write_delete_marker
from tests.fakes.meta import FakeMeta
from tests.support.apps import settings_env, sign
from tests.support.cli import findings, run_cli
from tests.support.meta_app import TOKEN, image_webhook, jobs, worker_for
from tests.support.retention import (
    PHONE_NUMBER_ID,
    Msg,
    app_on,
    deliver,
    now,
    s3_overrides,
    token,
)

pytestmark = pytest.mark.integration

KINDS = (EntryKind.RAW, EntryKind.RECORD, EntryKind.MEDIA, EntryKind.TOMBSTONE, EntryKind.AUDIT)
TAMPERINGS = ("changed_byte", "deleted", "delete_marker", "reverted", "hold_removed")
CONTACTS = [f"4477009{n:05d}" for n in range(1, 6)]


@dataclass
class Built:
    runtime: Runtime
    env: dict[str, str]
    s3: bool
    objects: dict[EntryKind, list[tuple[str, str]]]  # kind -> logged (key, version id)


def _logged_objects(rt: Runtime) -> dict[EntryKind, list[tuple[str, str]]]:
    out: dict[EntryKind, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for data in rt.log.entries(0, rt.log.size()):
        e = parse_entry(data)
        # Several leaves can name one object (an audit batch holds several events).
        if e.kind in out and e.key and e.version_id and (e.key, e.version_id) not in out[e.kind]:
            out[e.kind].append((e.key, e.version_id))
    return out


def _build(rt: Runtime, client: Any, shared: Path, fake: FakeMeta) -> None:
    # Raw captures and records: one delivery per contact.
    for i, contact in enumerate(CONTACTS):
        deliver(client, rt, [Msg(contact, f"hello {i}", now())])
    # Media: one image per contact, fetched from FakeMeta by the media worker.
    for i, contact in enumerate(CONTACTS):
        data = b"\xff\xd8\xff\xe0" + bytes([i]) * 2000 + b"\xff\xd9"
        fake.add_media(f"700{i}", data, "image/jpeg")
        body = image_webhook(
            shared, media_id=f"700{i}", data=data, wamid=f"wamid.M{i}", wa_id=contact
        )
        r = client.post(
            "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
        )
        assert r.status_code == 200, r.text
        rt.processor.sweep()
    with httpx.Client(timeout=10) as http:
        worker_for(rt, fake, http).run_once()
    assert sum(j.get("status") == "done" for j in jobs(rt).values()) == len(CONTACTS)
    # Tombstones: a GDPR erasure per contact.
    officer = token(rt, Role.COMPLIANCE_OFFICER)
    for contact in CONTACTS:
        r = client.post(
            "/v1/erasure",
            headers=officer,
            json={"phone_number_id": PHONE_NUMBER_ID, "contact": contact},
        )
        assert r.status_code == 200, r.text
    # Audit batches and several checkpoints (each append grows the log).
    for i in range(5):
        rt.audit.record(AuditAction.SEARCH_EXECUTED, SYSTEM, q=f"query {i}")
        rt.audit.flush()
        rt.checkpoints.sign_if_grown()


@pytest.fixture(params=["embedded", "servers"])
def built(request: pytest.FixtureRequest, tmp_path: Path, shared: Path) -> Iterator[Built]:
    overrides: dict[str, Any] = {"policies": "gdpr", "inline_workers": False}
    if request.param == "servers":
        overrides = s3_overrides(request.getfixturevalue("s3_endpoint"), policies="gdpr")
    # No Graph token: the app makes media jobs and runs no media loop; the test drives it.
    with FakeMeta(token=TOKEN) as fake, app_on(tmp_path, **overrides) as (client, rt):
        _build(rt, client, shared, fake)
        objs = _logged_objects(rt)
        for kind in KINDS:
            assert len(objs[kind]) >= len(TAMPERINGS), (kind, len(objs[kind]))
        yield Built(rt, settings_env(rt.settings), rt.objects.name == "s3", objs)


# -- tamperings through the raw store (never our adapter's guarded API) -----------------


def _local_vdir(b: Built, key: str) -> Path:
    return b.runtime.settings.data_dir / "evidence" / "objects" / key / "@v"


def _client(b: Built) -> Any:
    return b.runtime.objects._client  # type: ignore[attr-defined]  # the adapter's own client


def _bucket(b: Built) -> str:
    return b.runtime.settings.evidence_bucket


def change_byte(b: Built, key: str, vid: str) -> str | None:
    """Local: the stored bytes change. S3: versions are immutable, so a changed byte can
    only be a new version on top (returned)."""
    if b.s3:
        data = bytearray(_client(b).get_object(_bucket(b), key, version_id=vid).read())
        data[len(data) // 2] ^= 1
        return str(
            _client(b).put_object(_bucket(b), key, io.BytesIO(bytes(data)), len(data)).version_id
        )
    path = _local_vdir(b, key) / f"{vid}.data"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    return None


def delete_version(b: Built, key: str, vid: str) -> None:
    if b.s3:
        _client(b)._execute(
            "DELETE",
            _bucket(b),
            key,
            query_params={"versionId": vid},
            headers={"x-amz-bypass-governance-retention": "true"},
        )
        return
    for suffix in (".json", ".data"):
        (_local_vdir(b, key) / f"{vid}{suffix}").unlink()


def add_delete_marker(b: Built, key: str) -> None:
    if b.s3:
        _client(b).remove_object(_bucket(b), key)
    else:
        write_delete_marker(b.runtime.settings.data_dir / "evidence", key)


def add_version(b: Built, key: str, vid: str) -> str:
    data = b"reverted content"
    if b.s3:
        return str(_client(b).put_object(_bucket(b), key, io.BytesIO(data), len(data)).version_id)
    vdir = _local_vdir(b, key)
    meta = json.loads((vdir / f"{vid}.json").read_bytes())
    new = new_version_id()
    meta.update(
        version_id=new, sha256=hashlib.sha256(data).hexdigest(), size=len(data), legal_hold=False
    )
    (vdir / f"{new}.data").write_bytes(data)
    (vdir / f"{new}.json").write_text(json.dumps(meta))
    return new


def test_every_tampering_of_every_kind_is_named(built: Built) -> None:
    b, rt = built, built.runtime
    # A hold the log says is on, for one object of each kind (removed below).
    held = {kind: b.objects[kind][4] for kind in KINDS}
    for key, vid in held.values():
        rt.objects.set_legal_hold(key, vid, True)
    rt.log.append(
        [
            make_entry(
                EntryKind.HOLD_PLACED,
                time=rt.audit.clock(),
                key=key,
                version_id=vid,
                hold="h_matrix",
            ).data
            for key, vid in held.values()
        ]
    )
    rt.checkpoints.sign_if_grown()
    clean = run_cli(b.env, "verify", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    expect: set[tuple[str, str]] = set()
    for kind in KINDS:
        (k0, v0), (k1, v1), (k2, _), (k3, v3), (k4, v4) = b.objects[kind][:5]
        new = change_byte(b, k0, v0)
        expect.add(("object:extra_version" if new else "object:hash_mismatch", k0))
        delete_version(b, k1, v1)
        expect.add(("object:missing", k1))
        add_delete_marker(b, k2)
        expect.add(("object:delete_marker", k2))
        add_version(b, k3, v3)
        expect.add(("object:extra_version", k3))
        rt.objects.set_legal_hold(k4, v4, False)
        expect.add(("object:hold_mismatch", k4))
    # The log's own objects: a checkpoint and the tiles.
    cps = [(v.key, v.version_id) for v in rt.objects.list_versions("log/checkpoint/")]
    assert len(cps) >= 5
    log_expect = _tamper_log_objects(b, cps)

    result = run_cli(b.env, "verify", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    got = {(f["kind"], f["key"]) for f in findings(result)}
    assert expect - got == set(), sorted(expect - got)
    assert log_expect - got == set(), sorted(log_expect - got)
    by_key = {(f["kind"], f["key"]): f for f in findings(result)}
    for kind in KINDS:  # "what changed" is spelled out
        key, _ = b.objects[kind][4]
        assert by_key[("object:hold_mismatch", key)]["expected"] == "True"
        assert by_key[("object:hold_mismatch", key)]["found"] == "False"
        key, vid = b.objects[kind][1]
        assert by_key[("object:missing", key)]["version_id"] == vid

    # Last, a deleted tile: the log itself can no longer be read, and the key is named.
    bundle = _current_entries_bundle(rt)
    delete_version(b, bundle[0], bundle[1])
    broken = run_cli(b.env, "verify", "--json")
    assert broken.returncode == 1
    unreadable = [f for f in findings(broken) if f["kind"] == "log:unreadable"]
    assert unreadable and bundle[0] in unreadable[0]["message"], broken.stdout


def _tamper_log_objects(b: Built, cps: list[tuple[str, str]]) -> set[tuple[str, str]]:
    rt = b.runtime
    expect: set[tuple[str, str]] = set()
    (c0, cv0), (c1, _), (c2, cv2), (c3, cv3) = cps[0], cps[1], cps[2], cps[3]
    # A changed byte in a signed checkpoint: its signature no longer holds (on S3 the
    # changed copy is a second version, which is named too).
    new = change_byte(b, c0, cv0)
    expect.add(("checkpoint:invalid", c0))
    if new:
        expect.add(("object:extra_version", c0))
    add_delete_marker(b, c1)
    expect.add(("object:delete_marker", c1))
    add_version(b, c2, cv2)
    expect.add(("object:extra_version", c2))
    # A checkpoint version deleted outright (no marker), and the newest one too.
    delete_version(b, c3, cv3)
    expect.add(("object:missing", c3))
    newest = rt.checkpoints.pointer()
    assert newest is not None and newest[0] not in (c0, c1, c2, c3)
    delete_version(b, *newest)
    expect.add(("object:missing", newest[0]))
    # The level-0 tile verify reads for the current size: a changed hash.
    size = rt.log.size()
    tile_key = _current_level0_tile(rt, size)
    tile_vid = next(v.version_id for v in rt.objects.list_versions(tile_key) if v.key == tile_key)
    new = change_byte(b, tile_key, tile_vid)
    expect.add(("object:extra_version" if new else "tile:leaf_mismatch", tile_key))
    # Older partial tiles: a delete marker and a reverted version.
    old = [
        (v.key, v.version_id)
        for v in rt.objects.list_versions("log/tile/0/")
        if v.key != tile_key and not v.is_delete_marker
    ]
    assert len(old) >= 2
    add_delete_marker(b, old[0][0])
    expect.add(("object:delete_marker", old[0][0]))
    add_version(b, old[1][0], old[1][1])
    expect.add(("object:extra_version", old[1][0]))
    return expect


def _current_level0_tile(rt: Runtime, size: int) -> str:
    from archiver.ledger import tiles

    ref = next(r for r in tiles.tiles_for_size(size) if r.level == 0 and r.index == 0)
    return rt.log.prefix + ref.path


def _current_entries_bundle(rt: Runtime) -> tuple[str, str]:
    from archiver.ledger import tiles

    size = rt.log.size()
    key = rt.log.prefix + tiles.entries_path(0, tiles.tile_width(0, 0, size))
    vid = next(
        v.version_id
        for v in rt.objects.list_versions(key)
        if v.key == key and not v.is_delete_marker
    )
    return key, vid
