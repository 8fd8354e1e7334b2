"""The independent check: Go's reference code (golang.org/x/mod/sumdb/note and tlog),
handed only the package's manifest and the pinned key, verifies the checkpoint, the
records' inclusion proofs, the export leaf and the consistency proof; handed the whole
package (``gocheck package``), also every file, each record's bytes against its entry,
the raw batches and the four digests the export leaf names, recomputed with its own
RFC 8785 code: a forgery Python refuses, Go refuses on its own."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archiver.export.verify import verify_package
from archiver.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from archiver.ledger.note import Signer
from archiver.records import canonical
from tests.unit.export.factory import ORIGIN, Built, build
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


# -- the whole package: files, records, raw batches and the four digests of the leaf ------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("gopkg"))  # transcripts, media, raw slots, a tombstone


def _package(binary: Path, path: Path, key: str, *every: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "package", str(path), key, *every], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes | None],
             extra: dict[str, bytes] | None = None) -> Path:  # fmt: skip
    """A copy of the package with members replaced (None: dropped) or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = changes.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def _relist(manifest: dict[str, Any], path: str, data: bytes) -> None:
    """Update a file's line in the manifest as a careful forger would."""
    line = next(f for f in manifest["files"] if f["path"] == path)
    line["sha256"], line["size"] = hashlib.sha256(data).hexdigest(), len(data)


def test_go_verifies_the_whole_package(gocheck_bin: Path, built: Built) -> None:
    key = built.signer.verifier.key_text
    res = _package(gocheck_bin, built.path, key)
    assert res.returncode == 0, res.stderr
    with zipfile.ZipFile(built.path) as zf:
        n_files = len(zf.infolist()) - 1  # every member but manifest.json is listed
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["raw_batches"] and any(b["slots"] for b in manifest["raw_batches"])
    assert res.stdout.startswith(
        f"ok: package: {n_files} files, 6 records (6 of 6 inclusion proofs) in checkpoint 9, "
        f"{len(manifest['raw_batches'])} raw batches, export leaf 10 in 11 binds records, "
        "files, raw batches and head, consistent; load file agrees"), res.stdout  # fmt: skip
    sample = _package(gocheck_bin, built.path, key, "4")
    assert sample.returncode == 0 and "(2 of 6 inclusion proofs)" in sample.stdout, sample
    assert verify_package(built.path, key).ok  # the Python verifier agrees


def test_go_reads_a_package_streamed_to_a_pipe(gocheck_bin: Path, tmp_path: Path) -> None:
    # Written unseekable, every member has a data descriptor (flag bit 3).
    b = build(tmp_path, transcripts=False, unseekable=True)
    with zipfile.ZipFile(b.path) as zf:
        assert all(i.flag_bits & 0x08 for i in zf.infolist())
    res = _package(gocheck_bin, b.path, b.signer.verifier.key_text)
    assert res.returncode == 0 and res.stdout.startswith("ok: package:"), res.stderr


def _tampered(built: Built, tmp_path: Path, tamper: str) -> Path:
    with zipfile.ZipFile(built.path) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    m = json.loads(members["manifest.json"])
    changes: dict[str, bytes | None] = {}
    extra: dict[str, bytes] = {}
    if tamper == "byte":  # one changed byte in one file, manifest untouched
        name = next(n for n in members if n.startswith("text/"))
        data = bytearray(members[name])
        data[len(data) // 2] ^= 0x01
        changes[name] = bytes(data)
    elif tamper == "file+hash":  # an RSMF file edited and its manifest line updated
        name = next(n for n in members if n.startswith("rsmf/"))
        changes[name] = members[name] + b"\r\nforged"
        _relist(m, name, changes[name])
    elif tamper == "head+hash":  # the exporter renamed in the head and in the custody file
        m["exported_by"] = "someone-else@acme.example"
        custody = json.loads(members["chain-of-custody.json"])
        custody["exported_by"] = m["exported_by"]
        changes["chain-of-custody.json"] = json.dumps(custody).encode()
        _relist(m, "chain-of-custody.json", changes["chain-of-custody.json"])
    elif tamper == "head":  # only a head field: no file hash can see it
        m["query"]["q"] = "something else"
    elif tamper == "other-key":  # the checkpoint re-signed by another key
        other = Signer.generate(ORIGIN)
        cp = Checkpoint.parse(m["log"]["checkpoint"].split("\n\n")[0] + "\n")
        m["log"]["checkpoint"] = sign_checkpoint(cp, [other])
        m["log"]["verifier_key"] = other.verifier.key_text
    elif tamper == "swapped":  # the two (genuinely signed) checkpoints swapped
        m["log"], m["export"]["checkpoint"] = m["export"]["checkpoint"], m["log"]
    elif tamper == "record":  # a record's bytes replaced, every manifest hash updated
        rec = m["records"][0]
        forged = members[rec["native"]].replace(b'"kind":"message"', b'"kind":"messagX"')
        changes[rec["native"]] = forged
        rec["sha256"] = hashlib.sha256(forged).hexdigest()
        _relist(m, rec["native"], forged)
    elif tamper == "slot":  # a decrypted delivery edited, its manifest line updated
        name = next(s["path"] for b in m["raw_batches"] for s in b["slots"])
        changes[name] = members[name].replace(b"quote", b"QUOTE")
        assert changes[name] != members[name]
        _relist(m, name, changes[name])
    elif tamper == "loadfile":  # a record's Bates number changed, the file's hash updated
        rec = m["records"][1]
        dat = members["loadfile.dat"].decode("utf-8")
        row = f"\u00fe{rec['bates']}\u00fe\x14"
        assert row in dat
        changes["loadfile.dat"] = dat.replace(row, "\u00feACME9999999\u00fe\x14", 1).encode()
        _relist(m, "loadfile.dat", changes["loadfile.dat"])
    elif tamper == "unlisted":
        extra["text/extra.txt"] = b"not in the manifest"
    elif tamper == "unsafe":  # a name that would escape the folder it is extracted to
        extra["../evil.txt"] = b"x"
    else:
        raise AssertionError(tamper)
    changes["manifest.json"] = json.dumps(m).encode()
    return _rewrite(built.path, tmp_path / f"{tamper}.zip", changes, extra)


# What Go must name for each forgery (every line must be in its output).
GO_NAMES = {
    "byte": ["FAIL text/", ": SHA-256 "],
    "file+hash": ["FAIL export: the logged export names another file list"],
    "head+hash": ["FAIL export: the logged export names another manifest head",
                  "FAIL export: the logged export names another file list"],
    "head": ["FAIL export: the logged export names another manifest head"],
    "other-key": ["FAIL checkpoint: open note: note has no verifiable signatures"],
    "swapped": ["FAIL r_", "FAIL export: consistency 11->9"],
    "record": ["record bytes do not hash to the log entry's sha256",
               "FAIL export: records_sha256 is not the digest"],
    "slot": ["decrypted slot does not match the batch header's SHA-256"],
    "loadfile": ["FAIL loadfile.dat: its records or their Bates numbers differ",
                 "FAIL export: the logged export names another file list"],
    "unlisted": ["FAIL text/extra.txt: in the zip but not listed in the manifest"],
    "unsafe": ['FAIL "../evil.txt": unsafe member name'],
}  # fmt: skip


@pytest.mark.parametrize("tamper", list(GO_NAMES))
def test_go_names_a_forged_package(gocheck_bin: Path, built: Built, tmp_path: Path,
                                   tamper: str) -> None:  # fmt: skip
    key = built.signer.verifier.key_text
    bad = _tampered(built, tmp_path, tamper)
    assert not verify_package(bad, key).ok  # Python refuses it ...
    res = _package(gocheck_bin, bad, key)  # ... and so does Go, on its own
    assert res.returncode == 1, res.stdout
    for want in GO_NAMES[tamper]:
        assert want in res.stderr, (want, res.stderr)
    assert res.stderr.rstrip().splitlines()[-1].startswith("FAILED (")


def test_go_refuses_a_leaf_that_binds_only_the_records(gocheck_bin: Path,
                                                       tmp_path: Path) -> None:  # fmt: skip
    b = build(tmp_path, transcripts=False, bind_files=False)
    res = _package(gocheck_bin, b.path, b.signer.verifier.key_text)
    assert res.returncode == 1
    for k in ("files_sha256", "raw_batches_sha256", "head_sha256"):
        assert f"FAIL export: the logged export does not name {k}" in res.stderr, res.stderr


def test_go_refuses_another_key_and_a_broken_zip(gocheck_bin: Path, built: Built,
                                                 tmp_path: Path) -> None:  # fmt: skip
    res = _package(gocheck_bin, built.path, Signer.generate(ORIGIN).verifier.key_text)
    assert res.returncode == 1 and "FAIL checkpoint:" in res.stderr
    assert "FAIL export checkpoint:" in res.stderr
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    res = _package(gocheck_bin, junk, built.signer.verifier.key_text)
    assert res.returncode == 1 and "not a readable zip" in res.stderr


# The canonical form the leaf's digests use (docs/export.md): Go's own RFC 8785 code must
# give our bytes on the values where implementations differ.
JCS_CASES = [
    '{"b":1,"a":[true,false,null],"c":{"z":"","y":{}}}',
    '{"n":[0,-0,1.0,1e21,1e20,1e-7,1e-6,0.1,-2.5,5e-324,1.7976931348623157e308,'
    "123456789012345680000,4.35,0.000001234,1E2]}",
    '{"big":[9007199254740991,9007199254740992,-9007199254740992,123456789012345678901]}',
    '{"s":"quote \\" back \\\\ \\b\\f\\n\\r\\t \\u0000 \\u001f \\u007f <&> \\u2028 é 😀"}',
    '{"\\ud83d\\ude00":1,"\\uffff":2,"a":3,"é":4,"\\u0080":5,"":6}',
]


@pytest.mark.parametrize("doc", JCS_CASES)
def test_go_canonical_json_is_ours(gocheck_bin: Path, tmp_path: Path, doc: str) -> None:
    path = tmp_path / "doc.json"
    path.write_text(doc, encoding="utf-8")
    res = subprocess.run([str(gocheck_bin), "jcs", str(path)], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == canonical.dumps(json.loads(doc))


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of the kinds where canonical forms differ: doubles of every magnitude,
    integers around 2^53, control and non-BMP characters, keys that sort differently by
    UTF-16 than by code point."""
    chars = ["a", "Z", "\x00", "\x1f", "\x7f", '"', "\\", "\u2028", "é", "\uffff", "😀", "𝄞"]

    def text() -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(0, 6)))

    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False, text()])
    if kind == 1:
        return rng.choice([0, -1, 2**53 - 1, 2**53, -(2**53), 10**30, rng.randint(-999, 999)])
    if kind == 2:  # any finite double, from its bits
        while True:
            f = struct.unpack("<d", rng.randbytes(8))[0]
            if math.isfinite(f):
                return f
    if kind == 3:
        return rng.random() * 10.0 ** rng.randint(-25, 25)
    if kind == 4:
        return text()
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {text(): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_go_canonical_json_agrees_on_random_values(gocheck_bin: Path, tmp_path: Path) -> None:
    rng = random.Random(11)
    doc = [_random_value(rng) for _ in range(400)]
    assert any(isinstance(v, float) for v in doc) and any(isinstance(v, dict) for v in doc)
    path = tmp_path / "random.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    res = subprocess.run([str(gocheck_bin), "jcs", str(path)], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout == canonical.dumps(json.loads(path.read_text(encoding="utf-8")))
