"""Cross-check with Go's reference code (golang.org/x/mod/sumdb/note and .../tlog).

Python writes a real log (local store + SQLite state), signs a checkpoint and dumps
leaves, proofs and the signed note to JSON; ``tests/gocheck`` verifies all of it.
Without ``go`` the test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer
from archiver.store.local import LocalObjectStore
from archiver.store.port import LockMode, Retention
from archiver.store.state_sqlite import SqliteStateStore

GOCHECK = Path(__file__).resolve().parents[2] / "gocheck"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@pytest.fixture(scope="module")
def gocheck_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("go is not installed (needed for the Go cross-check)")
        pytest.skip("go is not installed")
    out = tmp_path_factory.mktemp("gocheck") / "gocheck"
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    subprocess.run(
        [go, "build", "-o", str(out), "."], cwd=GOCHECK, env=env, check=True, timeout=600
    )
    return out


def _write_input(tmp_path: Path, tamper: str | None = None) -> Path:
    store = LocalObjectStore(tmp_path / "objects")
    state = SqliteStateStore(tmp_path / "state.db")
    retention = lambda: Retention(LockMode.GOVERNANCE, datetime.now(UTC) + timedelta(days=1))  # noqa: E731
    log = TransparencyLog(store, state, "archive.example/log", retention)
    rng = random.Random(7)
    leaves: list[bytes] = []
    sizes = []
    while len(leaves) < 700:
        batch = [rng.randbytes(rng.randint(0, 80)) for _ in range(rng.randint(1, 90))]
        log.append(batch)
        leaves += batch
        sizes.append(len(leaves))
    signer = Signer.generate("archive.example/log")
    signed = CheckpointSigner(log, signer, store, state).sign_if_grown()
    assert signed is not None
    n = signed.checkpoint.size
    inclusion = []
    for size in (n, 1, 256, 257, 513):
        for i in sorted(rng.sample(range(size), min(size, 25))):
            inclusion.append(
                {
                    "index": i,
                    "tree_size": size,
                    "root": _b64(log.root_at(size)),
                    "proof": [_b64(p) for p in log.inclusion_proof(i, size)],
                }
            )
    consistency = []
    for m, k in [
        (1, n),
        (255, 256),
        (256, 257),
        (100, 700),
        (511, 513),
        (*sizes[2:4],),
        (sizes[5], n),
        (n, n),
    ]:
        consistency.append(
            {
                "old_size": m,
                "new_size": k,
                "old_root": _b64(log.root_at(m)),
                "new_root": _b64(log.root_at(k)),
                "proof": [_b64(p) for p in log.consistency_proof(m, k)],
            }
        )
    note = signed.note
    if tamper == "leaf":
        leaves[300] = leaves[300] + b"!"
    elif tamper == "note":
        note = note.replace(f"\n{n}\n", f"\n{n - 1}\n")
    elif tamper == "proof":
        consistency[3]["proof"][0] = _b64(b"\x00" * 32)
    doc = {
        "verifier_key": signer.verifier.key_text,
        "checkpoint": note,
        "leaves": [_b64(x) for x in leaves[:n]],
        "inclusion": inclusion,
        "consistency": consistency,
    }
    path = tmp_path / "input.json"
    path.write_text(json.dumps(doc))
    return path


def test_go_verifies_our_log(gocheck_bin: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        [str(gocheck_bin), str(_write_input(tmp_path))], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: note by archive.example/log")


@pytest.mark.parametrize("tamper", ["leaf", "note", "proof"])
def test_go_rejects_tampering(gocheck_bin: Path, tmp_path: Path, tamper: str) -> None:
    res = subprocess.run(
        [str(gocheck_bin), str(_write_input(tmp_path, tamper))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1, res.stdout
    assert "FAIL" in res.stderr
