"""C2SP signed-note and tlog-checkpoint, checked against Go's x/mod/sumdb/note vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.ledger.checkpoint_format import Checkpoint, open_checkpoint, sign_checkpoint
from archiver.ledger.errors import CheckpointError, NoteError
from archiver.ledger.note import Signer, Verifier, key_id, open_note, parse_note, sign_note

GO = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "rfc6962" / "signed_note_go.json").read_text()
)


def test_go_key_texts_round_trip() -> None:
    s = Signer.from_key_text(GO["signer_key"])
    assert s.key_text == GO["signer_key"]
    assert s.verifier.key_text == GO["verifier_key"]
    v = Verifier.from_key_text(GO["verifier_key"])
    assert v == s.verifier
    assert v.key_id == 0xC74F20A3 == key_id("PeterNeumann", v.public_key)


def test_sign_matches_go_byte_for_byte() -> None:
    s = Signer.from_key_text(GO["signer_key"])
    assert sign_note(GO["text"], [s]) == GO["signed"]
    note = open_note(GO["signed"], [Verifier.from_key_text(GO["verifier_key"])])
    assert note.text == GO["text"] and note.verified_by == (GO["verifier_key"],)


def test_generated_keys_and_several_signers() -> None:
    a, b = Signer.generate("log.example/a"), Signer.generate("log.example/b")
    assert Signer.from_key_text(a.key_text) == a
    msg = sign_note("hello\n", [a, b])
    assert open_note(msg, [b.verifier]).verified_by == (b.verifier.key_text,)
    # unknown keys are ignored, but some known key must have signed
    with pytest.raises(NoteError):
        open_note(msg, [Signer.generate("other").verifier])


def test_tampering_and_malformed() -> None:
    s = Signer.generate("k")
    msg = sign_note("a\nb\n", [s])
    with pytest.raises(NoteError):
        open_note(msg.replace("a\n", "A\n", 1), [s.verifier])
    for bad in (
        "",
        "no blank line\n",
        "a\n\n\n",
        "a\n\nnot a sig\n",
        "a\n\n\u2014 k !!!\n",
        "a\n\n\u2014 k AAAA\n",
    ):
        with pytest.raises(NoteError):
            parse_note(bad)
    for bad in ("text", "a\n\nb\n", "a\rb\n"):
        with pytest.raises(NoteError):
            sign_note(bad, [s])
    for bad in ("k+zz+AAAA", "k+c74f20a3+AAAA", "a+b", GO["verifier_key"].replace("c74f", "c84f")):
        with pytest.raises(NoteError):
            Verifier.from_key_text(bad)
    with pytest.raises(NoteError):
        Signer.from_key_text(GO["signer_key"].replace("c74f20a3", "c74f20a4"))
    with pytest.raises(NoteError):
        Signer.generate("has space")


def test_checkpoint_round_trip_and_errors() -> None:
    cp = Checkpoint("example.com/log", 42, bytes(range(32)), ("ext one",))
    text = cp.to_text()
    assert text == "example.com/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\n"
    assert Checkpoint.parse(text) == cp
    s = Signer.generate("example.com/log")
    signed = sign_checkpoint(cp, [s])
    assert open_checkpoint(signed, [s.verifier], "example.com/log") == cp
    with pytest.raises(CheckpointError):
        open_checkpoint(signed, [s.verifier], "other")
    for bad in (
        "o\n1\n",
        "o\n01\nAAAA\n",
        "o\n-1\nAAAA\n",
        "o\n1\nAAAA\n",
        "o\n1\n!!\n",
        "o\n1\nAAAA",
    ):
        with pytest.raises(CheckpointError):
            Checkpoint.parse(bad)
    assert issubclass(CheckpointError, NoteError)
