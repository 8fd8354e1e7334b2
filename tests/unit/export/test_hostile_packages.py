"""The offline verifier against packages a stranger crafted: a forged readable file with
its manifest entry updated to match, files added to the list, unsafe names, zip bombs, a
manifest nested too deep. It must say FAILED (naming why), never OK, never crash, never
inflate a bomb."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import resource
import zipfile
from pathlib import Path
from typing import Any

import pytest

from archiver.export.verify import verify_package
from tests.unit.export.factory import Built, build


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("hostile"))


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def _forge(src: Path, dst: Path, changes: dict[str, bytes],
           manifest_edit: Any = None) -> Path:  # fmt: skip
    """Rewrite ``src`` with ``changes`` and a manifest whose file list names the new
    bytes' SHA-256 and size (what a forger does: the file list itself is not signed)."""
    members = _members(src)
    members.update(changes)
    manifest = json.loads(members.pop("manifest.json"))
    listed = {f["path"] for f in manifest["files"]}
    for name in changes:
        if name not in listed:
            manifest["files"].append({"path": name})
    for f in manifest["files"]:
        if f["path"] in members:
            f["sha256"] = hashlib.sha256(members[f["path"]]).hexdigest()
            f["size"] = len(members[f["path"]])
    if manifest_edit is not None:
        manifest_edit(manifest)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", json.dumps(manifest))
    return dst


def _failures(path: Path, built: Built) -> list[str]:
    res = verify_package(path, built.signer.verifier.key_text)
    assert not res.ok, "a forged package verified OK"
    return [str(f) for f in res.failures]


def _first(built: Built, prefix: str) -> str:
    return next(n for n in _members(built.path) if n.startswith(prefix))


@pytest.mark.parametrize("prefix", ["text/", "rsmf/", "transcripts/", "loadfile.dat",
                                    "chain-of-custody.json"])  # fmt: skip
def test_a_forged_readable_file_with_its_manifest_entry_updated_fails(
    built: Built, tmp_path: Path, prefix: str
) -> None:
    name = _first(built, prefix)
    data = _members(built.path)[name]
    if prefix == "loadfile.dat":  # a column the record/attachment cross-check ignores
        forged = data.replace(b"Acme Ltd", b"Someone Else")
    elif prefix == "chain-of-custody.json":
        forged = data.replace(b"legal@acme.example", b"nobody@example.com")
    else:
        forged = data + b"\nI never agreed to this."
    assert forged != data
    bad = _forge(built.path, tmp_path / "forged.zip", {name: forged})
    assert "export: the logged export names another file list" in _failures(bad, built)


def test_a_file_added_to_the_list_fails(built: Built, tmp_path: Path) -> None:
    bad = _forge(built.path, tmp_path / "added.zip", {"text/r_planted.txt": b"planted"})
    assert "export: the logged export names another file list" in _failures(bad, built)


@pytest.mark.parametrize("field,value", [("exported_by", "someone@else.example"),
                                         ("time_zone", "Asia/Tokyo"),
                                         ("query", {"q": "other"}),
                                         ("note", "added")])  # fmt: skip
def test_a_changed_manifest_head_fails(built: Built, tmp_path: Path, field: str,
                                       value: Any) -> None:  # fmt: skip
    def edit(m: dict[str, Any]) -> None:
        m[field] = value

    bad = _forge(built.path, tmp_path / "head.zip", {}, edit)
    failures = _failures(bad, built)
    assert any("names another manifest head" in f for f in failures), failures


def test_an_export_leaf_that_binds_only_the_records_fails(tmp_path: Path) -> None:
    b = build(tmp_path, transcripts=False, bind_files=False)
    failures = _failures(b.path, b)
    assert any("does not bind the package's files" in f for f in failures), failures


@pytest.mark.parametrize("name", ["../../evil.txt", "/etc/evil", "text/../../evil",
                                  "C:/evil", "text\\..\\evil"])  # fmt: skip
def test_member_names_that_escape_a_folder_are_refused(
    built: Built, tmp_path: Path, name: str
) -> None:
    bad = _forge(built.path, tmp_path / "names.zip", {name: b"evil"})
    failures = _failures(bad, built)
    assert any("unsafe member name" in f for f in failures), failures
    assert not (tmp_path / "evil.txt").exists() and not Path("/etc/evil").exists()


def _bomb(built: Built, dst: Path, victim: str) -> Path:
    """``victim`` replaced by 48 MiB of zeros (about 50 KiB deflated)."""
    with zipfile.ZipFile(built.path) as zin, zipfile.ZipFile(dst, "w",
                                                             zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != victim:
                zout.writestr(info.filename, zin.read(info.filename))
        with zout.open(victim, "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20) if victim != "manifest.json" else b" " * (1 << 20)
            for _ in range(48):
                f.write(block)
    return dst


@pytest.mark.parametrize("victim", ["natives/records/", "loadfile.dat", "manifest.json"])
def test_a_zip_bomb_is_named_not_inflated(built: Built, tmp_path: Path, victim: str) -> None:
    name = _first(built, victim)
    bad = _bomb(built, tmp_path / "bomb.zip", name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    failures = _failures(bad, built)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert any("zip bomb" in f for f in failures), failures
    assert grown_kib < 40 * 1024, f"the verifier grew by {grown_kib} KiB"


def test_a_manifest_nested_too_deep_is_a_named_failure(tmp_path: Path, built: Built) -> None:
    bad = tmp_path / "deep.zip"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", "[" * 100_000 + "]" * 100_000)
    failures = _failures(bad, built)
    assert any(f.startswith("manifest.json: missing or unreadable") for f in failures)


# -- zip structure: every byte of the package is one of its listed members ----------------
#
# zipfile (like unzip) reads the central directory at the end; a streaming reader (Java's
# ZipInputStream, many ingestion pipelines) reads local entries from byte 0. Bytes that
# are no member's, before, between or after the members, let one package show two
# contents: the verifier checks one, a review platform loads the other.


def _smuggled_entry(name: str, data: bytes) -> bytes:
    """A local file entry (header and data) for ``name``, as a streaming reader sees it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(name, data)
        end = zf.start_dir
    return buf.getvalue()[:end]


def test_a_prepended_zip_is_refused(built: Built, tmp_path: Path) -> None:
    fake = io.BytesIO()
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("text/r_forged.txt", "I never agreed to this.")
    bad = tmp_path / "prepended.zip"
    bad.write_bytes(fake.getvalue() + built.path.read_bytes())
    failures = _failures(bad, built)
    assert any(f.startswith("package: ") and "before the first member" in f
               for f in failures), failures  # fmt: skip


@pytest.mark.parametrize("how", ["appended", "comment"])
def test_bytes_after_the_zip_are_refused(built: Built, tmp_path: Path, how: str) -> None:
    data = built.path.read_bytes()
    assert data[-22:-18] == b"PK\x05\x06" and data[-2:] == b"\0\0"  # no comment: EOCD last
    extra = _smuggled_entry("text/r_forged.txt", b"I never agreed to this.")
    if how == "appended":
        data += extra
    else:  # an archive comment: zipfile reads it as a comment, a scanner as an entry
        data = data[:-2] + len(extra).to_bytes(2, "little") + extra
    bad = tmp_path / f"{how}.zip"
    bad.write_bytes(data)
    failures = _failures(bad, built)
    assert any(f.startswith("package: ") and "after the end record" in f
               for f in failures), failures  # fmt: skip


def test_a_local_entry_smuggled_between_members_is_refused(built: Built,
                                                           tmp_path: Path) -> None:  # fmt: skip
    bad = tmp_path / "smuggled.zip"
    with zipfile.ZipFile(built.path) as zin, zipfile.ZipFile(bad, "w",
                                                             zipfile.ZIP_DEFLATED) as zout:
        for n, info in enumerate(zin.infolist()):
            zout.writestr(info, zin.read(info.filename))
            if n == 0:  # an entry only a streaming reader sees (not in the directory)
                zout.fp.write(_smuggled_entry("text/r_forged.txt", b"forged"))  # type: ignore[union-attr]
                zout.start_dir = zout.fp.tell()  # type: ignore[union-attr]
    with zipfile.ZipFile(bad) as zf:  # the directory view is the genuine package
        assert "text/r_forged.txt" not in zf.namelist()
    failures = _failures(bad, built)
    assert any(f.startswith("package: ") and "between members" in f
               for f in failures), failures  # fmt: skip


def test_a_manifest_with_duplicate_keys_is_refused(built: Built, tmp_path: Path) -> None:
    """JSON parsers disagree on a repeated key (first or last wins): the verifier, taking
    the last, would check the real lists while another reader shows the first."""
    members = _members(built.path)
    manifest = members["manifest.json"]
    assert manifest.startswith(b"{")
    members["manifest.json"] = (b'{"case":{"id":"c_fake","name":"Fake v. Forged"},'
                                b'"records":[],"files":[],' + manifest[1:])  # fmt: skip
    bad = tmp_path / "dupkeys.zip"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    failures = _failures(bad, built)
    assert any(f.startswith("manifest.json: ") and "duplicate key" in f
               for f in failures), failures  # fmt: skip


def test_the_layout_check_accepts_genuine_packages(built: Built, tmp_path: Path) -> None:
    """Both writers' layouts (seekable: sizes in the local header; unseekable: data
    descriptors after each member) verify: the layout check is no false alarm."""
    assert verify_package(built.path, built.signer.verifier.key_text).ok
    streamed = build(tmp_path, transcripts=False, unseekable=True)
    res = verify_package(streamed.path, streamed.signer.verifier.key_text)
    assert res.ok, res.summary()


def _parse_bomb(victim: str, values: int = 2_000_000) -> bytes:
    """``victim``'s bytes as a parse bomb: millions of tiny values (each 3 to 5 bytes,
    some 70 bytes once parsed) with random padding, so it deflates less than 20:1 and no
    inflation ratio catches it (a 220 KB package made the verifier take 540 MB)."""
    pad = base64.b64encode(random.Random(7).randbytes(values // 4)).decode()
    if victim == "loadfile.dat":
        row = "\x14".join(["\u00fe\u00fe"] * 16)
        return ("\ufeff" + "\r\n".join([row] * (values // 16) + ["\u00fe" + pad + "\u00fe"])
                ).encode()  # fmt: skip
    return ('{"format":"wa-archiver-export/1","x":[' + ",".join(["{}"] * values)
            + '],"pad":"' + pad + '"}').encode()  # fmt: skip


@pytest.mark.parametrize("victim", ["natives/records/", "loadfile.dat", "manifest.json"])
def test_a_parse_bomb_is_named_not_parsed(built: Built, tmp_path: Path, victim: str) -> None:
    name = _first(built, victim)
    bad = tmp_path / "parse-bomb.zip"
    with zipfile.ZipFile(built.path) as zin, zipfile.ZipFile(bad, "w",
                                                             zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = _parse_bomb(victim) if info.filename == name else zin.read(info.filename)
            zout.writestr(info.filename, data)
        ratio = zout.getinfo(name).file_size / zout.getinfo(name).compress_size
    assert ratio < 20, ratio  # below every inflation cap: only the parse budget stops it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    failures = _failures(bad, built)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert any("a parse bomb" in f for f in failures), failures
    assert grown_kib < 40 * 1024, f"the verifier grew by {grown_kib} KiB"


def test_a_listed_zip_bomb_in_an_unproven_file_list_is_not_inflated(
    built: Built, tmp_path: Path
) -> None:
    """A forger lists 64 MiB of zeros (64 KiB deflated) with its true hash and size: the
    file list no longer matches the export leaf, so its sizes are the forger's, and the
    verifier must not inflate what they name (1 GB took 8 s per 1.3 MB of package)."""
    name = _first(built, "text/")
    block = b"\0" * (1 << 20)
    digest = hashlib.sha256()
    for _ in range(64):
        digest.update(block)
    members = _members(built.path)
    manifest = json.loads(members.pop("manifest.json"))
    for f in manifest["files"]:
        if f["path"] == name:
            f["sha256"], f["size"] = digest.hexdigest(), 64 << 20
    bad = tmp_path / "listed-bomb.zip"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            if member != name:
                zf.writestr(member, data)
        with zf.open(name, "w", force_zip64=True) as out:
            for _ in range(64):
                out.write(block)
        zf.writestr("manifest.json", json.dumps(manifest))
    failures = _failures(bad, built)
    assert "export: the logged export names another file list" in failures, failures
    assert any(f.startswith(f"{name}: not hashed") for f in failures), failures


def test_a_member_larger_than_its_proven_size_is_named_unread(
    built: Built, tmp_path: Path
) -> None:
    """The manifest untouched (its list proven), one member swapped for a bomb: it is
    named after reading one byte past its listed size, not inflated whole."""
    name = _first(built, "text/")
    bad = _bomb(built, tmp_path / "bomb.zip", name)
    res = verify_package(bad, built.signer.verifier.key_text)
    assert any(f.subject == name and "differs from the manifest" in f.reason
               for f in res.failures), res.failures  # fmt: skip
