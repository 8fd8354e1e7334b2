"""Outsiders can check the archive: the proof API (checkpoint, key, inclusion and
consistency proofs, a record's proof) verifies with nothing but the public key, and
``archiver verify`` exits 0 on a clean archive and 1 naming every tampered object —
on the embedded store and on real MinIO, for raw captures, records and audit objects."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.audit import SYSTEM, AuditAction
from archiver.auth import Role
from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import open_checkpoint
from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.ledger.note import Verifier
from archiver.runtime import Runtime
from archiver.store.local import write_delete_marker
from tests.conftest import shared_dir
from tests.support.apps import backend_settings, running_app, settings_env, sign
from tests.support.cli import findings, run_cli


@pytest.fixture(params=["embedded", "servers"])
def archive(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[TestClient, Runtime, dict[str, str]]]:
    settings = backend_settings(request, tmp_path, request.param, inline_workers=False)
    with running_app(settings) as (client, runtime):
        for name in ("messages_text.json", "messages_image.json", "statuses_delivered.json"):
            body = (shared_dir() / "fixtures" / "whatsapp" / name).read_bytes()
            r = client.post(
                "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert r.status_code == 200
        runtime.processor.sweep()
        while runtime.follower.catch_up():
            pass
        runtime.audit.record(AuditAction.SEARCH_EXECUTED, SYSTEM, q="test")
        runtime.audit.flush()
        runtime.checkpoints.sign_if_grown()
        yield client, runtime, settings_env(settings)


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def test_proofs_verify_with_only_the_public_key(
    archive: tuple[TestClient, Runtime, dict[str, str]],
) -> None:
    client, runtime, _ = archive
    token, _ = runtime.tokens.create(role=Role.AUDITOR, name="outsider")
    auth = {"Authorization": f"Bearer {token}"}
    key_text = client.get("/v1/log/public-key", headers=auth).text.strip()
    verifier = Verifier.from_key_text(key_text)
    note = client.get("/v1/log/checkpoint", headers=auth).text
    checkpoint = open_checkpoint(note, [verifier], runtime.log.origin)
    assert checkpoint.size == runtime.log.size()
    # Every leaf's inclusion proof checks against the signed root.
    for leaf in range(checkpoint.size):
        proof = client.get(
            "/v1/log/proofs/inclusion",
            params={"leaf_index": leaf, "tree_size": checkpoint.size},
            headers=auth,
        ).json()
        entry = _b(proof["entry"])
        assert merkle.hash_leaf(entry) == _b(proof["leaf_hash"])
        merkle.verify_inclusion(
            leaf,
            checkpoint.size,
            merkle.hash_leaf(entry),
            [_b(h) for h in proof["proof"]],
            checkpoint.root_hash,
        )
    # Consistency from every earlier size to the checkpoint.
    for first in range(1, checkpoint.size + 1):
        proof = client.get(
            "/v1/log/proofs/consistency",
            params={"from": first, "to": checkpoint.size},
            headers=auth,
        ).json()
        merkle.verify_consistency(
            first,
            checkpoint.size,
            _b(proof["first_root"]),
            checkpoint.root_hash,
            [_b(h) for h in proof["proof"]],
        )
    # A record's proof names its own object.
    record_entries = [parse_entry(d) for d in runtime.log.entries(0, checkpoint.size)]
    record = next(e for e in record_entries if e.kind is EntryKind.RECORD)
    record_id = str(record.fields["record_id"])
    proof = client.get(f"/v1/records/{record_id}/proof", headers=auth).json()
    assert parse_entry(_b(proof["entry"])).key == record.key
    merkle.verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        merkle.hash_leaf(_b(proof["entry"])),
        [_b(h) for h in proof["proof"]],
        open_checkpoint(proof["checkpoint"], [verifier]).root_hash,
    )
    # Bad ranges are clear 400s; no token is a 401.
    bad = client.get("/v1/log/proofs/inclusion", params={"leaf_index": 10_000}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "proof_range"
    assert client.get("/v1/log/checkpoint").status_code == 401


def _objects(runtime: Runtime, prefix: str) -> list[tuple[str, str]]:
    return [
        (v.key, v.version_id)
        for v in runtime.objects.list_versions(prefix)
        if not v.is_delete_marker
    ]


def _raw_client(runtime: Runtime) -> Any:
    return runtime.objects._client  # type: ignore[attr-defined]  # the adapter's own client


def _local_dir(runtime: Runtime, key: str) -> Path:
    return runtime.settings.data_dir / "evidence" / "objects" / key / "@v"


def test_verify_clean_then_every_tampering_is_named(
    archive: tuple[TestClient, Runtime, dict[str, str]],
) -> None:
    _client, runtime, env = archive
    clean = run_cli(env, "verify", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    s3 = runtime.objects.name == "s3"
    bucket = runtime.settings.evidence_bucket
    raw_key, raw_vid = _objects(runtime, "raw/")[0]
    record_key, record_vid = _objects(runtime, "records/")[0]
    audit_key, _audit_vid = _objects(runtime, "audit/")[0]
    held_key, held_vid = _objects(runtime, "records/")[1]
    # A hold that the log says is on.
    runtime.objects.set_legal_hold(held_key, held_vid, True)
    runtime.log.append(
        [
            make_entry(
                EntryKind.HOLD_PLACED,
                time=runtime.audit.clock(),
                key=held_key,
                version_id=held_vid,
                hold="h_test",
            ).data
        ]
    )
    assert run_cli(env, "verify", "--json").returncode == 0
    if s3:
        import io

        client = _raw_client(runtime)
        # A changed byte can only be a new version on S3 (reads go by version id).
        data = bytearray(client.get_object(bucket, record_key, version_id=record_vid).read())
        data[10] ^= 1
        client.put_object(bucket, record_key, io.BytesIO(bytes(data)), len(data))
        # Deleting a raw capture version needs governance bypass (tests run GOVERNANCE).
        client._execute(
            "DELETE",
            bucket,
            raw_key,
            query_params={"versionId": raw_vid},
            headers={"x-amz-bypass-governance-retention": "true"},
        )
        client.remove_object(bucket, audit_key)  # a delete marker
    else:
        path = _local_dir(runtime, record_key) / f"{record_vid}.data"
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[10] ^= 1
        path.write_bytes(bytes(data))
        for suffix in (".json", ".data"):
            (_local_dir(runtime, raw_key) / f"{raw_vid}{suffix}").unlink()
        write_delete_marker(runtime.settings.data_dir / "evidence", audit_key)
    runtime.objects.set_legal_hold(held_key, held_vid, False)
    result = run_cli(env, "verify", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = {(f["kind"], f["key"]) for f in findings(result)}
    changed = "object:extra_version" if s3 else "object:hash_mismatch"
    assert (changed, record_key) in found
    assert ("object:missing", raw_key) in found
    assert ("object:delete_marker", audit_key) in found
    assert ("object:hold_mismatch", held_key) in found
    # The verify run itself is a leaf too.
    assert any(
        parse_entry(d).kind is EntryKind.VERIFY_RUN
        for d in runtime.log.entries(0, runtime.log.size())
    )
