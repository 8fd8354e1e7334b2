"""The independent check: Go's reference code (golang.org/x/mod/sumdb/note and tlog),
handed only the package's manifest and the pinned key, verifies the checkpoint, the
records' inclusion proofs, the export leaf and the consistency proof."""

from __future__ import annotations

import base64
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from archiver.ledger.note import Signer
from tests.unit.export.factory import ORIGIN, build
from tests.unit.ledger.test_gocheck import gocheck_bin  # the built program, shared

__all__ = ["gocheck_bin"]


def _manifest(tmp_path: Path, tamper: str | None = None) -> tuple[Path, str]:
    b = build(tmp_path, transcripts=False)
    with zipfile.ZipFile(b.path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    if tamper == "entry":  # a record's entry changed by one byte
        entry = bytearray(base64.b64decode(manifest["records"][2]["entry"]))
        entry[-3] ^= 1
        manifest["records"][2]["entry"] = base64.b64encode(bytes(entry)).decode()
    elif tamper == "consistency":
        manifest["export"]["consistency"][0] = base64.b64encode(b"\0" * 32).decode()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path, b.signer.verifier.key_text


def _go(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "manifest", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_go_verifies_the_package(gocheck_bin: Path, tmp_path: Path) -> None:
    path, key = _manifest(tmp_path)
    res = _go(gocheck_bin, str(path), key)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: checkpoint 9, 6 of 6 record proofs, export leaf 10 in 11")
    sample = _go(gocheck_bin, str(path), key, "4")  # a sample: every 4th record
    assert sample.returncode == 0 and "2 of 6 record proofs" in sample.stdout


@pytest.mark.parametrize("tamper", ["entry", "consistency", "key"])
def test_go_rejects_a_tampered_package(gocheck_bin: Path, tmp_path: Path, tamper: str) -> None:
    path, key = _manifest(tmp_path, None if tamper == "key" else tamper)
    if tamper == "key":
        key = Signer.generate(ORIGIN).verifier.key_text
    res = _go(gocheck_bin, str(path), key)
    assert res.returncode == 1, res.stdout
    assert "FAIL" in res.stderr
