"""CheckpointSigner on both backends: idempotent, race-safe, refuses forks, rotates keys."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import pytest
from backends import ORIGIN, open_log, open_stores

from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import open_checkpoint
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.errors import CheckpointRefused, NoteError
from archiver.ledger.note import Signer

pytestmark = pytest.mark.integration


def test_sign_only_when_grown_and_race_safe(backend: dict[str, Any]) -> None:
    objects, state = open_stores(backend)
    log = open_log(backend)
    key = Signer.generate(ORIGIN)
    signer = CheckpointSigner(log, key, objects, state)
    assert signer.sign_if_grown() is None and signer.latest() is None  # empty log
    log.append([b"one", b"two", b"three"])
    first = signer.sign_if_grown()
    assert first is not None and first.checkpoint.size == 3
    assert signer.sign_if_grown() is None
    log.append([f"e{i}".encode() for i in range(300)])
    results: list[Any] = []
    racers = [CheckpointSigner(open_log(backend), key, *open_stores(backend)) for _ in range(4)]
    threads = [
        threading.Thread(target=lambda s=s: results.append(s.sign_if_grown())) for s in racers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each racer names the first checkpoint in the log before signing; one leaf results
    # (append once_since), so all of them sign the same tree of 303 + 1 entries.
    assert [r.checkpoint.size for r in results if r is not None] in (
        [304],
        [304, 304],
        [304, 304, 304],
        [304] * 4,
    )
    latest = signer.latest()
    assert latest is not None
    cp = open_checkpoint(latest, [key.verifier], ORIGIN)
    assert cp.size == 304 and cp.root_hash == log.root()
    keys = list(objects.list_keys(f"{log.prefix}checkpoint/"))
    assert len(keys) == 2
    # entries 3..302 are the test's; 303 is the one leaf naming the first checkpoint
    named = parse_entry(log.entry(303))
    assert named.kind is EntryKind.CHECKPOINT
    assert named.key == first.key and named.version_id == first.version_id
    assert named.fields["sha256"] == hashlib.sha256(first.note.encode()).hexdigest()
    assert named.fields["size"] == len(first.note.encode()) and named.fields["tree_size"] == 3
    assert signer.sign_if_grown() is None  # an idle log: no new leaf, no new checkpoint
    assert log.size() == 304
    newest = signer.latest_signed()
    assert newest is not None and signer.pointer() == (newest.key, newest.version_id)


def test_refuses_a_forked_tree(backend: dict[str, Any]) -> None:
    objects, state = open_stores(backend)
    log = open_log(backend)
    signer = CheckpointSigner(log, Signer.generate(ORIGIN), objects, state)
    log.append([b"a", b"b"])
    assert signer.sign_if_grown() is not None
    log.append([b"c"])
    sv = state.get(log.state_key)
    assert sv is not None
    doc = json.loads(sv.value)
    doc["root"] = "A" * 43 + "="  # a root the tiles cannot produce
    state.put(log.state_key, json.dumps(doc).encode(), if_match=sv.token)
    with pytest.raises(CheckpointRefused):
        signer.sign_if_grown()


def test_key_rotation(backend: dict[str, Any]) -> None:
    objects, state = open_stores(backend)
    log = open_log(backend)
    old, new = Signer.generate(ORIGIN), Signer.generate(ORIGIN)
    signer = CheckpointSigner(log, old, objects, state)
    log.append([b"x"])
    signer.sign_if_grown()
    announced = signer.rotate(new)
    # the tree announcing the new key is signed by the OLD key ...
    cp = open_checkpoint(announced.note, [old.verifier], ORIGIN)
    with pytest.raises(NoteError):
        open_checkpoint(announced.note, [new.verifier], ORIGIN)
    last = parse_entry(log.entry(cp.size - 1))
    assert last.kind is EntryKind.CHECKPOINT_KEY
    assert last.fields["verifier_key"] == new.verifier.key_text
    # ... and later trees by the new one, consistent with the announcement
    log.append([b"y"])
    after = signer.sign_if_grown()
    assert after is not None
    cp2 = open_checkpoint(after.note, [new.verifier], ORIGIN)
    merkle.verify_consistency(
        cp.size, cp2.size, cp.root_hash, cp2.root_hash, log.consistency_proof(cp.size, cp2.size)
    )
