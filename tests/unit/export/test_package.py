"""Export packages end to end: build from synthetic records (real tree, real signatures),
then check every format and the offline verifier, including tampering."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from archiver.cli import main
from archiver.export import dat, rsmf
from archiver.export.errors import ExportInputError, ExportStateError
from archiver.export.model import Attachment, ExportItem, RawBatch, RawSlot
from archiver.export.verify import KeyNotPinned, verify_package
from archiver.ledger.checkpoint_format import Checkpoint, sign_checkpoint
from archiver.ledger.note import Signer
from tests.unit.export.factory import ORIGIN, Built, build, rid

DATA = Path(__file__).resolve().parents[2] / "data" / "rsmf"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("pkg"))


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def _rewrite(src: Path, dst: Path, changes: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, changes.get(info.filename, zin.read(info.filename)))
    return dst


def _rsmf_manifests(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name, data in _members(path).items():
        if name.endswith(".rsmf"):
            msg = email.message_from_bytes(data, policy=email.policy.default)
            parts = list(msg.iter_attachments())
            assert len(parts) == 1 and parts[0].get_filename() == "rsmf.zip"
            with zipfile.ZipFile(io.BytesIO(parts[0].get_content())) as inner:
                out[name] = json.loads(inner.read("rsmf_manifest.json"))
    return out


def _cli(*args: str) -> int:
    return main(["verify-export", *args])


# -- the happy path --------------------------------------------------------------------------


def test_package_verifies_with_the_pinned_key(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(str(built.path), "--public-key", built.signer.verifier.key_text) == 0
    out = capsys.readouterr().out
    assert "RESULT: OK" in out and "records checked:  6 (attachments 3)" in out
    res = verify_package(built.path, built.signer.verifier.key_text)
    assert res.ok and res.files == built.summary.files and res.raw_slots == 5
    assert res.tree_size == 9 and res.export_tree_size == 11


def test_a_package_streamed_to_a_pipe_verifies(tmp_path: Path) -> None:
    b = build(tmp_path, unseekable=True, transcripts=False)
    with zipfile.ZipFile(b.path) as zf:
        assert all(i.flag_bits & 0x08 for i in zf.infolist())  # sizes after the data
        assert zf.testzip() is None
    assert verify_package(b.path, b.signer.verifier.key_text).ok


def test_key_may_be_a_file(built: Built, tmp_path: Path) -> None:
    key = tmp_path / "log.vkey"
    key.write_text(built.signer.verifier.key_text + "\n")
    assert _cli(str(built.path), "--public-key", str(key)) == 0


# -- RSMF ------------------------------------------------------------------------------------


def test_every_rsmf_manifest_validates_with_format_checking(built: Built) -> None:
    schema = json.loads((DATA.parent.parent.parent / "archiver/export/data/"
                         "rsmf_schema_2_0_0.json").read_text())  # fmt: skip
    shared = Path("/work/shared/fixtures/rsmf/rsmf_schema_2_0_0.json")
    if shared.exists():  # the shipped copy is Relativity's, unchanged
        assert json.loads(shared.read_text()) == schema
    checker = jsonschema.FormatChecker()
    assert "date-time" in checker.checkers  # rfc3339-validator installed: formats checked
    validator = jsonschema.Draft7Validator(schema, format_checker=checker)
    manifests = _rsmf_manifests(built.path)
    assert sorted(manifests) == [
        "rsmf/c_alpha/2026-03-01_001.rsmf", "rsmf/c_alpha/2026-03-02_001.rsmf",
        "rsmf/c_beta/2026-03-01_001.rsmf", "rsmf/c_beta/2026-03-02_001.rsmf",
    ]  # fmt: skip
    for name, doc in manifests.items():
        errors = list(validator.iter_errors(doc))
        assert not errors, (name, errors[0].message)
    # Format checking bites: a time without its offset is refused.
    bad = json.loads(json.dumps(manifests["rsmf/c_alpha/2026-03-01_001.rsmf"]))
    bad["events"][0]["timestamp"] = "2018-09-11T09:45:00"
    assert not validator.is_valid(bad)
    with pytest.raises(ExportInputError, match="timestamp"):
        rsmf.validate(bad)


def test_the_shipped_sample_fails_the_schema() -> None:
    sample = json.loads((DATA / "sample_manifest_2_0_0.json").read_text())
    with pytest.raises(ExportInputError, match="RSMF manifest invalid"):
        rsmf.validate(sample)
    validator = jsonschema.Draft7Validator(rsmf.schema(), format_checker=jsonschema.FormatChecker())
    paths = {"/".join(map(str, e.absolute_path)) for e in validator.iter_errors(sample)}
    # The numeric participant id, and (format checking on) a time without its offset.
    assert paths == {"participants/0/id", "events/0/timestamp"}


def test_rsmf_files_are_rfc5322_with_one_rsmf_zip(built: Built) -> None:
    for name, data in _members(built.path).items():
        if not name.endswith(".rsmf"):
            continue
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["X-RSMF-Version"] == "2.0.0"
        assert msg["From"] and msg["Date"] and msg.get_content_type() == "multipart/mixed"
        atts = list(msg.iter_attachments())
        assert [a.get_filename() for a in atts] == ["rsmf.zip"]
        assert atts[0]["Content-Transfer-Encoding"] == "base64"
        with zipfile.ZipFile(io.BytesIO(atts[0].get_content())) as inner:
            names = inner.namelist()
            doc = json.loads(inner.read("rsmf_manifest.json"))
            assert all("/" not in n for n in names)  # everything at the zip root
            for ev in doc["events"]:
                for a in ev.get("attachments", ()):
                    assert a["id"] in names


def test_rsmf_events_carry_edits_reactions_receipts_revokes_and_ids(built: Built) -> None:
    manifests = _rsmf_manifests(built.path)
    alpha1 = manifests["rsmf/c_alpha/2026-03-01_001.rsmf"]
    alpha2 = manifests["rsmf/c_alpha/2026-03-02_001.rsmf"]
    assert alpha1["eventcollectionid"] == alpha2["eventcollectionid"]
    assert alpha1["eventcollectionid"] != manifests["rsmf/c_beta/2026-03-01_001.rsmf"][
        "eventcollectionid"]  # fmt: skip
    by_id = {ev["id"]: ev for m in manifests.values() for ev in m["events"]}
    assert set(by_id) == {rid(i) for i in range(6)}
    hashes = {it.record_id: it.record_sha256 for it in built.items}
    for ev_id, ev in by_id.items():
        custom = {c["name"]: c["value"] for c in ev["custom"]}
        assert custom["record_id"] == ev_id and custom["record_hash"] == hashes[ev_id]
        assert ev["timestamp"].endswith(("+01:00", "+02:00"))  # Europe/Paris
    edited = by_id[rid(2)]
    assert edited["edits"][0]["previous"] == "Thanks" and edited["edits"][0]["new"].startswith(
        "Thanks!")  # fmt: skip
    assert edited["reactions"] == [
        {"value": "👍", "count": 2, "participants": ["b_business", "s_c_alpha"]}
    ]
    assert {r["action"] for r in edited["read_receipts"]} == {"read", "delivered"}
    assert by_id[rid(3)]["deleted"] is True and by_id[rid(3)]["body"] == "oops"
    assert len(by_id[rid(1)]["attachments"]) == 2
    displays = {p["id"]: p["display"] for p in alpha1["participants"]}
    assert displays == {"s_c_alpha": "Marie Dupont", "b_business": "Acme Ltd"}


def test_slices_hold_at_most_10000_events_and_share_a_collection_id(tmp_path: Path) -> None:
    from tests.unit.export.factory import many

    b = build(tmp_path, list(many(10_001)), transcripts=False, validate_rsmf=False)
    manifests = _rsmf_manifests(b.path)
    sizes = {n: len(m["events"]) for n, m in manifests.items()}
    assert sizes == {"rsmf/c_0000/2026-03-01_001.rsmf": 10_000,
                     "rsmf/c_0000/2026-03-01_002.rsmf": 1}  # fmt: skip
    assert len({m["eventcollectionid"] for m in manifests.values()}) == 1
    assert verify_package(b.path, b.signer.verifier.key_text).ok


# -- load file -------------------------------------------------------------------------------


def test_dat_parses_back_into_the_records_and_attachments(built: Built) -> None:
    raw = _members(built.path)["loadfile.dat"]
    assert raw.startswith(b"\xef\xbb\xbf\xc3\xbe")  # UTF-8 BOM, then þ
    columns, rows = dat.parse(raw.decode("utf-8"))
    assert columns[:4] == ("BEGBATES", "ENDBATES", "BEGATTACH", "ENDATTACH")
    records = [r for r in rows if r["DOCTYPE"] == "record"]
    atts = [r for r in rows if r["DOCTYPE"] == "attachment"]
    trans = [r for r in rows if r["DOCTYPE"] == "transcript"]
    assert [r["RECORDID"] for r in records] == [it.record_id for it in built.items]
    want_atts = {a.id: it.record_id for it in built.items for a in it.attachments}
    assert len(atts) == len(want_atts) == 3
    members = _members(built.path)
    for r in rows:
        for col in ("NATIVEPATH", "TEXTPATH", "TRANSCRIPTPATH"):
            assert not r[col] or r[col] in members
    # One number per record and attachment, contiguous, families contiguous.
    singles = list(dat.bates_ranges(records + atts, "ACME"))
    assert all(first == last for first, last in singles)
    numbers = sorted(first for first, _ in singles)
    assert numbers == list(range(1, 1 + len(numbers)))
    for r in records:
        fam = [x for x in atts if x["BEGATTACH"] == r["BEGATTACH"]]
        beg, end = int(r["BEGATTACH"][4:]), int(r["ENDATTACH"][4:])
        assert [int(x["BEGBATES"][4:]) for x in fam] == list(range(beg + 1, end + 1))
        assert hashlib.sha256(members[r["NATIVEPATH"]]).hexdigest() == r["SHA256"]
    # Transcripts: page ranges after the documents.
    assert [(r["BEGBATES"], r["ENDBATES"]) for r in trans] == [
        ("ACME0000010", "ACME0000012"), ("ACME0000013", "ACME0000015")]  # fmt: skip


def test_dat_round_trips_newlines_and_neutralises_delimiters() -> None:
    line = dat.row_line({"BEGBATES": "X1", "FROM": "a\r\nb\nc", "TO": "þ\x14"})
    _, rows = dat.parse(dat.header() + line)
    assert rows[0]["FROM"] == "a\nb\nc" and rows[0]["TO"] == "? "
    assert "\u00ae" in line and "\n" not in line.rstrip("\r\n")
    with pytest.raises(ExportInputError):
        dat.parse(dat.header().lstrip("\ufeff") + line)  # no BOM
    with pytest.raises(ExportInputError, match="qualifiers"):
        dat.parse(dat.header() + "x\x14y\r\n")


def test_a_literal_registered_sign_and_unicode_line_breaks_read_back_truthfully() -> None:
    # ``®`` is the format's newline: a literal one would read back as a line break.
    line = dat.row_line({"BEGBATES": "X1", "FROM": "Acme®\u2028Ltd\u0085x\u2029y"})
    _, rows = dat.parse(dat.header() + line)
    assert rows[0]["FROM"] == "Acme(R)\nLtd\nx\ny"


# -- tombstones ------------------------------------------------------------------------------


def test_tombstones_name_the_erasure_and_carry_no_content(built: Built) -> None:
    erased = rid(4)
    members = _members(built.path)
    blob = b"".join(members.values())
    for name, data in members.items():
        assert b"secret personal text" not in data, name
    for m in _rsmf_manifests(built.path).values():
        assert "secret personal text" not in json.dumps(m, ensure_ascii=False)
    text = members[f"text/{erased}.txt"].decode()
    assert "er_42" in text and "2026-03-04" in text
    beta1 = _rsmf_manifests(built.path)["rsmf/c_beta/2026-03-01_001.rsmf"]
    (ev,) = beta1["events"]
    custom = {c["name"]: c["value"] for c in ev["custom"]}
    assert custom["erasure_request"] == "er_42" and "er_42" in ev["body"]
    assert "attachments" not in ev and "edits" not in ev
    assert "Marie Dupont" not in json.dumps(beta1, ensure_ascii=False)  # names erased too
    _, rows = dat.parse(members["loadfile.dat"].decode())
    row = next(r for r in rows if r["RECORDID"] == erased)
    assert "Marie" not in row["FROM"] + row["TO"] + row["CONVERSATION"]
    assert "er_42" in row["ERASED"] and "2026-03-04" in row["ERASED"]
    assert all(not r["ERASED"] for r in rows if r["RECORDID"] != erased)
    manifest = json.loads(members["manifest.json"])
    rec = next(r for r in manifest["records"] if r["record_id"] == erased)
    assert rec["erased"]["request_id"] == "er_42" and rec["attachments"] == []
    assert not any(b["key"].endswith("b000004") for b in manifest["raw_batches"])
    assert b"er_42" in blob


def test_a_tombstone_with_content_is_refused(built: Built) -> None:
    item = next(i for i in built.items if i.erasure is not None)
    from dataclasses import replace

    with pytest.raises(ExportInputError, match="tombstone carries no content"):
        replace(item, text="leak")


# -- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["text", "rsmf", "attachment", "raw", "loadfile.dat"])
def test_one_changed_byte_is_named(built: Built, tmp_path: Path, victim: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    members = _members(built.path)
    name = next(n for n in members if n.startswith({
        "text": "text/", "rsmf": "rsmf/", "attachment": "natives/attachments/",
        "raw": "natives/raw/", "loadfile.dat": "loadfile.dat"}[victim]))  # fmt: skip
    data = bytearray(members[name])
    data[len(data) // 2] ^= 0x01
    bad = _rewrite(built.path, tmp_path / "bad.zip", {name: bytes(data)})
    assert _cli(str(bad), "--public-key", built.signer.verifier.key_text) == 1
    out = capsys.readouterr().out
    assert f"FAILED {name}: SHA-256" in out and "RESULT: FAILED" in out


def test_a_flipped_byte_in_the_zip_itself_is_named(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray(built.path.read_bytes())
    name = next(n for n in _members(built.path) if n.startswith("natives/raw/") and n.endswith(
        ".bin"))  # fmt: skip
    with zipfile.ZipFile(built.path) as zf:
        info = zf.getinfo(name)  # stored, not deflated: its bytes sit in the file as they are
    at = raw.index(_members(built.path)[name][:64], info.header_offset)
    raw[at + 40] ^= 0xFF
    bad = tmp_path / "flipped.zip"
    bad.write_bytes(bytes(raw))
    assert _cli(str(bad), "--public-key", built.signer.verifier.key_text) == 1
    assert f"FAILED {name}" in capsys.readouterr().out


def test_a_record_swapped_with_consistent_hashes_still_fails_its_entry(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Replace a record's bytes AND fix every hash in the manifest: the log entry still
    # names the old hash, so the record (and the export's record list) fail.
    members = _members(built.path)
    manifest = json.loads(members["manifest.json"])
    rec = manifest["records"][0]
    forged = members[rec["native"]].replace(b'"kind":"message"', b'"kind":"messagX"')
    sha = hashlib.sha256(forged).hexdigest()
    rec["sha256"] = sha
    for f in manifest["files"]:
        if f["path"] == rec["native"]:
            f["sha256"] = sha
    bad = _rewrite(built.path, tmp_path / "swap.zip",
                   {rec["native"]: forged, "manifest.json": json.dumps(manifest).encode()})
    assert _cli(str(bad), "--public-key", built.signer.verifier.key_text) == 1
    out = capsys.readouterr().out
    assert f"FAILED {rec['record_id']}: record bytes do not hash to the log entry" in out
    assert "FAILED export: records_sha256" in out


def test_a_checkpoint_signed_by_another_key_is_refused(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Signer.generate(ORIGIN)
    members = _members(built.path)
    manifest = json.loads(members["manifest.json"])
    cp = Checkpoint.parse(manifest["log"]["checkpoint"].split("\n\n")[0] + "\n")
    manifest["log"]["checkpoint"] = sign_checkpoint(cp, [other])
    manifest["log"]["verifier_key"] = other.verifier.key_text
    bad = _rewrite(built.path, tmp_path / "swapped.zip",
                   {"manifest.json": json.dumps(manifest).encode()})  # fmt: skip
    assert _cli(str(bad), "--public-key", built.signer.verifier.key_text) == 1
    out = capsys.readouterr().out
    assert "FAILED checkpoint: checkpoint refused" in out
    # A whole package built under another key, checked against ours: refused too.
    assert _cli(str(built.path), "--public-key", other.verifier.key_text) == 1
    assert "FAILED checkpoint: checkpoint refused" in capsys.readouterr().out


def test_a_later_checkpoint_by_another_key_is_refused(tmp_path: Path) -> None:
    b = build(tmp_path, later_signer=Signer.generate(ORIGIN))
    res = verify_package(b.path, b.signer.verifier.key_text)
    assert [str(f) for f in res.failures] == [
        "export checkpoint: checkpoint refused: no signature from a known key"]  # fmt: skip


def test_unreadable_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Signer.generate(ORIGIN).verifier.key_text
    assert _cli(str(tmp_path / "nope.zip"), "--public-key", key) == 2
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    assert _cli(str(junk), "--public-key", key) == 1
    assert "FAILED package: not a readable zip" in capsys.readouterr().out
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("hello.txt", "hi")
    assert _cli(str(empty), "--public-key", key) == 1
    assert "FAILED manifest.json: missing" in capsys.readouterr().out


def test_key_not_pinned(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(str(built.path)) == 1
    assert "key not pinned" in capsys.readouterr().err
    with pytest.raises(KeyNotPinned):
        verify_package(built.path, None)
    assert _cli(str(built.path), "--trust-package-key") == 0
    captured = capsys.readouterr()
    assert "internally consistent, NOT" in captured.err and "RESULT: OK" in captured.out


def test_verify_export_opens_no_archive_and_creates_no_folder(built: Built, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    env["ARCHIVER_DATA_DIR"] = str(tmp_path / "must-not-exist")
    env["HOME"] = str(work)
    res = subprocess.run(
        [sys.executable, "-m", "archiver.cli", "verify-export", str(built.path),
         "--public-key", built.signer.verifier.key_text],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "RESULT: OK" in res.stdout
    assert list(work.iterdir()) == [] and not (tmp_path / "must-not-exist").exists()
    assert "archive" not in res.stderr.lower()  # no "archive: …" banner either


# -- writer input checks ---------------------------------------------------------------------


def _writer(tmp_path: Path, built: Built) -> Any:
    from archiver.export.model import ExportInfo, LogBundle
    from archiver.export.writer import PackageWriter

    manifest = json.loads(_members(built.path)["manifest.json"])
    log = LogBundle.from_note(manifest["log"]["checkpoint"], built.signer.verifier.key_text)
    info = ExportInfo("case-7", "c", "me", built.items[0].timestamp, {})
    return PackageWriter(io.BytesIO(), info, log, built.bates, spool_dir=tmp_path)


def test_writer_refuses_inconsistent_input(built: Built, tmp_path: Path) -> None:
    from dataclasses import replace

    item = next(i for i in built.items if i.attachments)
    bad_att = replace(item.attachments[0], source=b"other bytes")
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="sha256"):
        w.add(replace(item, attachments=(bad_att, item.attachments[1])))
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="contiguously"):
        w.bates = {**built.bates, item.attachments[1].id: 99}
        w.add(item)
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="came back"):
        alpha = [i for i in built.items if i.conversation_id == "c_alpha"]
        beta = [i for i in built.items if i.conversation_id == "c_beta"]
        for it in [alpha[0], beta[0], alpha[1]]:
            w.add(it)
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="time order"):
        w.add(built.items[1])
        w.add(built.items[0])
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="no Bates"):
        w.bates = {}
        w.add(built.items[0])
    batch = built.batches[0]
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="batch header"):
        w.add_raw_batch(RawBatch(batch.key, batch.version_id, batch.data,
                                 (RawSlot(0, batch.slots[0].body + b" "),)))  # fmt: skip
    with _writer(tmp_path, built) as w, pytest.raises(ExportInputError, match="batch header"):
        w.add_raw_batch(RawBatch(batch.key, batch.version_id, batch.data,
                                 (RawSlot(1, batch.slots[0].body),)))  # another's slot  # fmt: skip
    with _writer(tmp_path, built) as w, pytest.raises(ExportStateError):
        w.finish(None)  # type: ignore[arg-type]
    with _writer(tmp_path, built) as w, pytest.raises(ExportStateError):
        w.seal([])  # before records_list_digest
    with _writer(tmp_path, built) as w:
        w.records_list_digest()
        with pytest.raises(ExportStateError):
            w.add(built.items[0])
    with pytest.raises(ExportInputError, match="bytes do not match"):
        replace(built.items[0], record_json=b"{}")
    with pytest.raises(ExportInputError, match="portable id"):
        Attachment("../etc/passwd", "x", "t", "0" * 64, b"")
    assert isinstance(built.items[0], ExportItem)


def test_a_checkpoint_that_does_not_verify_is_refused_up_front(built: Built) -> None:
    from archiver.export.model import LogBundle

    manifest = json.loads(_members(built.path)["manifest.json"])
    with pytest.raises(ExportInputError, match="does not verify"):
        LogBundle.from_note(manifest["log"]["checkpoint"],
                            Signer.generate(ORIGIN).verifier.key_text)  # fmt: skip


def test_manifest_lists_every_file_with_hash_and_size(built: Built) -> None:
    members = _members(built.path)
    manifest = json.loads(members["manifest.json"])
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(members) - {"manifest.json"}
    for path, f in listed.items():
        assert f["sha256"] == hashlib.sha256(members[path]).hexdigest()
        assert f["size"] == len(members[path])
    rec = manifest["records"][0]
    assert base64.b64decode(rec["entry"]) == built.items[0].leaf.entry
    assert manifest["log"]["verifier_key"] == built.signer.verifier.key_text
    custody = json.loads(members["chain-of-custody.json"])
    assert custody["case"]["id"] == "case-7" and custody["counts"]["records"] == 6
    assert custody["events"][0]["action"] == "case:created"
