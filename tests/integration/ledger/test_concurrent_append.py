"""Several processes append at once, one is SIGKILLed (twice) mid-run and restarted:
no gaps, no duplicates, everything acknowledged present at its acknowledged index, and
every stored checkpoint consistent with the next. Runs on local+SQLite and on MinIO."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from backends import ORIGIN, open_log, open_stores

from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import open_checkpoint
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.note import Signer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APPENDER = Path(__file__).resolve().parent / "appender.py"
REPO = Path(__file__).resolve().parents[3]
PER_WORKER = 10_000


def _spawn(cfg_path: Path, name: str, count: int, ack: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(APPENDER), str(cfg_path), name, str(count), str(ack)], env=env
    )


def _acks(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line torn by SIGKILL is not an acknowledgement
            out.append((parts[0], int(parts[1])))
    return out


def _wait_for(pred: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _entry_id(entry: bytes) -> str:
    """The appenders' entries carry an ``id``; the signer's name a checkpoint object."""
    obj = json.loads(entry)
    if "id" in obj:
        return str(obj["id"])
    assert obj["kind"] == "checkpoint", obj
    return f"cp-{obj['key']}"


@pytest.mark.timeout(900)
def test_two_processes_one_killed(backend: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**backend, "stale_after": 1.0, "max_batch": 60}
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    objects, state = open_stores(cfg)
    signer_log = open_log(cfg)
    signer = CheckpointSigner(signer_log, Signer.generate(ORIGIN), objects, state)

    stop = threading.Event()
    signed_sizes: list[int] = []

    def sign_loop() -> None:
        while not stop.is_set():
            s = signer.sign_if_grown()
            if s is not None:
                signed_sizes.append(s.checkpoint.size)
            time.sleep(0.2)

    signing = threading.Thread(target=sign_loop, daemon=True)
    signing.start()

    ack_a, ack_b = tmp_path / "a.ack", tmp_path / "b.ack"
    b = _spawn(cfg_path, "b", PER_WORKER, ack_b)
    acked_a = 0
    killed: list[tuple[int, int, str]] = []  # (start, count, run) of batches claimed, then killed
    for run, kill_at in enumerate((1500, 4000)):
        a = _spawn(cfg_path, f"a{run}", PER_WORKER - acked_a, ack_a)
        proc = a
        _wait_for(lambda k=kill_at, p=proc: len(_acks(ack_a)) >= k or p.poll() is not None, 600)
        # SIGKILL it while it holds a claimed, uncommitted batch: the worst moment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sv = state.get(f"{signer_log.prefix}state")
            pending = json.loads(sv.value)["pending"] if sv else None
            if pending and pending["owner"].endswith(f":{a.pid}"):
                a.send_signal(signal.SIGKILL)
                killed.append((pending["start"], pending["count"], f"a{run}"))
                break
            time.sleep(0.001)
        else:
            raise AssertionError("never saw the worker holding a batch")
        a.wait()
        acked_a = len(_acks(ack_a))
    a = _spawn(cfg_path, "a9", PER_WORKER - acked_a, ack_a)
    assert a.wait(timeout=800) == 0
    assert b.wait(timeout=800) == 0
    stop.set()
    signing.join()
    last = signer.sign_if_grown()
    if last is not None:
        signed_sizes.append(last.checkpoint.size)

    # --- no gaps, no duplicates, every acknowledgement honoured
    log = open_log(cfg)
    size = log.size()
    entries = log.entries(0, size)
    assert len(entries) == size
    ids = [_entry_id(e) for e in entries]
    assert len(set(ids)) == size, "an entry was sequenced twice"
    named = sum(i.startswith("cp-") for i in ids)  # the signer's checkpoint entries
    acked = _acks(ack_a) + _acks(ack_b)
    assert len(acked) == 2 * PER_WORKER
    for entry_id, index in acked:
        assert ids[index] == entry_id
    # Unacknowledged entries of the killed batches may or may not be in; nothing else is.
    assert size - len(acked) - named <= 2 * cfg["max_batch"]
    assert {i.split("-")[0] for i in ids} <= {"a0", "a1", "a9", "b", "cp"}
    assert named == len(set(signed_sizes)) - 1  # every checkpoint but the newest is named

    # The batches claimed by the killed worker were completed by the other one.
    acked_ids = {i for i, _ in acked}
    assert len(killed) == 2
    for start, count, run in killed:
        for i in range(start, start + count):
            assert ids[i].startswith(f"{run}-") and ids[i] not in acked_ids

    # --- tree and tiles agree with a recomputation from the entries
    tree = merkle.MemoryTree(merkle.hash_leaf(e) for e in entries)
    assert log.root() == tree.root() == log.root_at(size)

    # --- every stored checkpoint verifies and is consistent with the next
    verifier = signer.signer.verifier
    keys = sorted(k for k in objects.list_keys(f"{log.prefix}checkpoint/"))
    assert len(keys) >= 2 and len(keys) == len(set(signed_sizes))
    cps = []
    for key in keys:
        (v,) = [x for x in objects.list_versions(key) if x.key == key]
        cps.append(open_checkpoint(objects.get(key, v.version_id).decode(), [verifier], ORIGIN))
    assert cps[-1].size == size
    for old, new in itertools.pairwise(cps):
        assert old.size < new.size
        merkle.verify_consistency(
            old.size,
            new.size,
            old.root_hash,
            new.root_hash,
            log.consistency_proof(old.size, new.size),
        )
        assert tree.root(old.size) == old.root_hash
    for i in (0, size // 3, size - 1):
        merkle.verify_inclusion(
            i, size, tree.node(0, i), log.inclusion_proof(i, size), cps[-1].root_hash
        )
    assert state.get(f"{log.prefix}state") is not None
