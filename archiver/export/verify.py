"""Offline verification of an export package (pure: handed the zip and the pinned key).

No server, settings or data folder: everything needed is in the package except the one
thing that must not be, the log's public key. Checks, each failure named:

1. every file listed in ``manifest.json`` is there with its SHA-256 and size, and the zip
   holds no file the manifest does not list;
2. every record's stored bytes (``natives/records/…``) hash to the ``sha256`` of its log
   entry, the entry names the record's object key and version, and the leaf
   ``SHA-256(0x00 ‖ entry)`` is included in the package's checkpoint (RFC 9162 §2.1.3.2);
3. the checkpoint is a C2SP signed note verified under the pinned key (its origin is the
   manifest's);
4. raw batches hash to what their records' headers name; each decrypted slot hashes to
   the batch header's SHA-256 for that slot;
5. the export's own leaf names this record list (``records_sha256``) and its count, this
   file list, raw batch list and manifest head (``files_sha256``, ``raw_batches_sha256``,
   ``head_sha256``: so every file, the text, RSMF, transcripts, load file and custody
   too, is bound to the log, not only the sealed natives), is included in a later
   checkpoint signed by the same key, and that checkpoint is consistent with the first
   (RFC 9162 §2.1.4.2);
6. the load file parses and names exactly the package's records and attachments.

A hostile package must not make the verifier write, crash or eat memory: it writes
nothing, refuses member names that could escape a folder when extracted (absolute, ``..``,
backslashes, drive letters, control characters), and reads a member whole only when its
declared size is within :data:`MAX_RATIO` times its compressed size (zipfile never
inflates past the declared size), so a zip bomb is named, not inflated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from archiver.export import dat, layout
from archiver.export.batches import slot_hashes
from archiver.export.errors import ExportError
from archiver.export.manifest import head_digest, records_digest
from archiver.ledger.checkpoint_format import Checkpoint, open_checkpoint
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.errors import LedgerError
from archiver.ledger.merkle import hash_leaf, verify_consistency, verify_inclusion
from archiver.ledger.note import Verifier


class KeyNotPinned(ExportError):
    code = "key_not_pinned"


# A member read whole (manifest, stored record, raw batch, load file) may inflate to at
# most this many times its compressed size (plus SMALL_MEMBER): our packages stay far
# below (hashes and sealed content barely compress: a manifest about 3.3, a load file about
# 4.6, a record 1.4); a zip bomb is far above. Parsing multiplies what is read (a Python
# object per JSON value or DAT field), so this ratio times the parse's growth bounds memory.
MAX_RATIO = 20
SMALL_MEMBER = 1 << 20
# A member parsed (manifest, stored record, load file) must spend at least this many bytes
# per value: ours spend 50 to 90 per JSON value and about 30 per DAT field, while "{}," or an
# empty DAT field costs 3 to 5 bytes and some 70 bytes of memory once parsed (a parse bomb:
# a package of 220 KB made the verifier take 540 MB). Below the slack, anything goes.
MIN_BYTES_PER_VALUE = 16
PARSE_SLACK = 64 << 10
# A stored record is one webhook's worth of JSON; nothing legitimate comes near this.
MAX_RECORD_BYTES = 64 << 20
_LEAF_BINDS = ("files_sha256", "raw_batches_sha256", "head_sha256")


class _MemberTooLarge(Exception):
    pass


def _read(zf: zipfile.ZipFile, name: str, cap: int | None = None) -> bytes:
    """A member read whole, refused (``_MemberTooLarge``) when it would inflate past
    ``cap`` or past MAX_RATIO times its compressed size. Raises KeyError when missing."""
    info = zf.getinfo(name)
    limit = max(SMALL_MEMBER, MAX_RATIO * info.compress_size)
    if cap is not None:
        limit = min(limit, cap)
    if info.file_size > limit:
        raise _MemberTooLarge(f"{name} would inflate to {info.file_size} bytes "
                              f"({info.compress_size} compressed): refused as a zip bomb")
    return zf.read(name)


def _parse_budget(name: str, data: bytes, separators: tuple[bytes, ...]) -> None:
    """Refuse (``_MemberTooLarge``) a member to be parsed whose values are packed denser
    than MIN_BYTES_PER_VALUE: memory then stays a small multiple of the bytes read."""
    values = sum(data.count(sep) for sep in separators)
    if values * MIN_BYTES_PER_VALUE > len(data) + PARSE_SLACK:
        raise _MemberTooLarge(f"{name} packs {values} values in {len(data)} bytes, more "
                              f"than one per {MIN_BYTES_PER_VALUE}: refused unparsed "
                              "(a parse bomb)")  # fmt: skip


_JSON_VALUES = (b",", b"[", b"{")


def _parse_json(name: str, data: bytes) -> Any:
    _parse_budget(name, data, _JSON_VALUES)
    return json.loads(data, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: a repeated key is refused. Parsers disagree on which one wins,
    so a manifest with one would show another reader other lists than the ones checked."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_manifest(data: bytes) -> Any:
    return _parse_json(layout.MANIFEST, data)


_LOCAL = struct.Struct("<4s5H3L2H")  # local file header (30 bytes), APPNOTE 4.3.7
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory (22 bytes), 4.3.16
_Z64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end locator (20 bytes), 4.3.15
_Z64_EOCD = struct.Struct("<4sQ2H2L4Q")  # zip64 end record (56 bytes), 4.3.14
_DESCRIPTOR = b"PK\x07\x08"


def _has_zip64(extra: bytes) -> bool:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        if kind == 0x0001:
            return True
        at += 4 + length
    return False


def _layout_problem(zf: zipfile.ZipFile) -> str | None:
    """Why the zip holds bytes that are no listed member\'s (None: it holds none). Every
    byte must be, in order: the members\' local entries from offset 0, back to back, each
    as its directory entry describes it, then the central directory, then the end record,
    nothing after it (no archive comment). zipfile (and unzip) read the directory at the
    end and skip anything else; a streaming reader reads local entries from byte 0: extra
    bytes let one file show two contents, one to the verifier, another to a platform."""
    fp = zf.fp
    if fp is None:
        return "the zip is closed"
    size = fp.seek(0, 2)
    if size < _EOCD.size:
        return "too short for a zip"
    fp.seek(size - _EOCD.size)
    sig, disk, cd_disk, _n_disk, _n, cd_size, cd_offset, comment = _EOCD.unpack(
        fp.read(_EOCD.size))
    if sig != b"PK\x05\x06" or comment:
        return "bytes after the end record (an archive comment or an appended payload)"
    if disk or cd_disk:
        return "a multi-disk zip"
    cd_end = size - _EOCD.size
    if cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF or _n == 0xFFFF:
        if cd_end < _Z64_LOCATOR.size:
            return "a zip64 end record is missing"
        fp.seek(cd_end - _Z64_LOCATOR.size)
        lsig, _d, z64_at, _t = _Z64_LOCATOR.unpack(fp.read(_Z64_LOCATOR.size))
        fp.seek(z64_at)
        record = fp.read(_Z64_EOCD.size)
        if lsig != b"PK\x06\x07" or len(record) != _Z64_EOCD.size:
            return "a zip64 end record is missing"
        zsig, rec_size, *_rest, cd_size, cd_offset = _Z64_EOCD.unpack(record)
        if zsig != b"PK\x06\x06" or z64_at + 12 + rec_size != cd_end - _Z64_LOCATOR.size:
            return "bytes between the zip64 end record and the end record"
        cd_end = z64_at
    if cd_offset + cd_size != cd_end:  # zipfile shifts every offset by the difference
        return (f"{cd_end - cd_offset - cd_size} bytes the directory does not account for "
                "(before the first member, or between the directory and the end record)")
    pos = 0
    for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
        if info.header_offset != pos:
            what = "before the first member" if pos == 0 else "between members"
            return f"bytes {what} (at offset {pos}, {info.filename!r} starts at " \
                   f"{info.header_offset})"
        fp.seek(pos)
        header = fp.read(_LOCAL.size)
        if len(header) != _LOCAL.size:
            return f"{info.filename!r}: truncated local header"
        (lsig, _v, flags, _m, _t, _dt, crc, csize, usize, name_len,
         extra_len) = _LOCAL.unpack(header)  # fmt: skip
        name = fp.read(name_len)
        extra = fp.read(extra_len)
        if lsig != b"PK\x03\x04":
            return f"{info.filename!r}: no local header where the directory says"
        enc = "utf-8" if flags & 0x800 else "cp437"
        if name.decode(enc, "replace") != info.orig_filename:
            return f"{info.filename!r}: its local header names {name!r}"
        pos += _LOCAL.size + name_len + extra_len + info.compress_size
        if flags & 0x08:  # sizes in a data descriptor after the data
            fp.seek(pos)
            head = fp.read(4)
            # 8-byte sizes when the local header has a zip64 field (APPNOTE 4.3.9.2)
            zip64 = _has_zip64(extra) or max(info.compress_size, info.file_size) >= 0xFFFFFFFF
            pos += (4 if head == _DESCRIPTOR else 0) + (20 if zip64 else 12)
        elif crc != info.CRC or (csize != 0xFFFFFFFF
                                 and (csize, usize) != (info.compress_size, info.file_size)):
            return f"{info.filename!r}: its local header differs from its directory entry"
    if pos != cd_offset:
        return f"bytes between members (after the last, at offset {pos}, before the " \
               f"directory at {cd_offset})"
    return None


def _unsafe_name(name: str) -> str | None:
    """Why a member name could escape a folder when the package is extracted (None:
    safe). The writer only makes relative POSIX names of a portable alphabet."""
    if not name or name.startswith("/") or "\\" in name:
        return "absolute name or backslash"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return "control character in the name"
    parts = name.split("/")
    if ":" in parts[0]:
        return "drive letter or scheme"
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        return "empty, '.' or '..' path component"
    return None


@dataclass(frozen=True, slots=True)
class Failure:
    subject: str  # a file path, a record id, "checkpoint", "export", …
    reason: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


@dataclass(slots=True)
class VerifyResult:
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: int = 0
    records: int = 0
    attachments: int = 0
    raw_batches: int = 0
    raw_slots: int = 0
    tree_size: int | None = None
    export_tree_size: int | None = None
    trusted_package_key: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, subject: str, reason: str) -> None:
        self.failures.append(Failure(subject, reason))

    def summary(self) -> str:
        lines = [
            f"files checked:    {self.files}",
            f"records checked:  {self.records} (attachments {self.attachments})",
            f"raw batches:      {self.raw_batches} ({self.raw_slots} decrypted slots)",
            f"checkpoint size:  {self.tree_size}",
            f"export leaf in:   {self.export_tree_size}",
        ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += [f"FAILED {f}" for f in self.failures]
        lines.append("RESULT: OK" if self.ok else f"RESULT: FAILED ({len(self.failures)})")
        return "\n".join(lines)


TRUST_WARNING = (
    "the package's own key was trusted (--trust-package-key): this proves only that the "
    "package is internally consistent, NOT that the archive's log signed it"
)


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None


def _hash_member(zf: zipfile.ZipFile, name: str, limit: int) -> tuple[str, int]:
    """SHA-256 and size of a member, reading at most ``limit`` + 1 bytes: a member larger
    than its listed size is wrong whatever follows, and a bomb is not inflated to say so."""
    h = hashlib.sha256()
    size = 0
    with zf.open(name) as f:
        while size <= limit and (chunk := f.read(min(1 << 20, limit + 1 - size))):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _open_checkpoint(
    res: VerifyResult, what: str, log: Mapping[str, Any], key: Verifier, origin: str | None
) -> Checkpoint | None:
    try:
        cp = open_checkpoint(str(log["checkpoint"]), [key], origin)
    except (LedgerError, KeyError) as exc:
        res.fail(what, f"checkpoint refused: {getattr(exc, 'message', exc)}")
        return None
    if cp.size != log.get("tree_size") or base64.b64encode(cp.root_hash).decode() != log.get(
        "root_hash"
    ):
        res.fail(what, "manifest's tree size / root differ from the signed checkpoint")
    return cp


def verify_package(
    source: str | Path | IO[bytes],
    public_key: str | None,
    *,
    trust_package_key: bool = False,
    progress: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Verify a package. ``public_key``: the pinned verifier key (C2SP vkey text). Raises
    KeyNotPinned without one unless ``trust_package_key``; every other problem is a
    :class:`Failure` in the result."""
    if public_key is None and not trust_package_key:
        raise KeyNotPinned("key not pinned: pass --public-key (the log's verifier key)")
    res = VerifyResult()
    try:
        zf = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as exc:
        res.fail("package", f"not a readable zip: {exc}")
        return res
    with zf:
        try:
            problem = _layout_problem(zf)
        except (OSError, struct.error) as exc:
            problem = f"unreadable structure: {exc}"
        if problem is not None:
            res.fail("package", problem)
        try:
            manifest = _load_manifest(_read(zf, layout.MANIFEST))
        except (KeyError, ValueError, RecursionError, zipfile.BadZipFile, _MemberTooLarge,
                OSError, EOFError) as exc:  # fmt: skip
            res.fail(layout.MANIFEST, f"missing or unreadable: {type(exc).__name__}: {exc}")
            return res
        if not isinstance(manifest, dict) or manifest.get("format") != layout.FORMAT:
            res.fail(layout.MANIFEST, f"not a {layout.FORMAT} manifest")
            return res
        try:
            _verify(zf, manifest, public_key, res, progress)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            res.fail(layout.MANIFEST, f"malformed: {type(exc).__name__}: {exc}")
        except (NotImplementedError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
            # an unsupported compression method, an encrypted member, a broken zip
            res.fail("package", f"unreadable member: {type(exc).__name__}: {exc}")
    return res


def _verify(
    zf: zipfile.ZipFile,
    manifest: dict[str, Any],
    public_key: str | None,
    res: VerifyResult,
    progress: Callable[[str], None] | None,
) -> None:
    say = progress or (lambda _msg: None)
    log = manifest["log"]
    if public_key is None:
        res.trusted_package_key = True
        res.warnings.append(TRUST_WARNING)
        public_key = str(log["verifier_key"])
    try:
        key = Verifier.from_key_text(public_key)
    except LedgerError as exc:
        res.fail("public key", exc.message)
        return
    if log.get("verifier_key") != key.key_text:
        res.warnings.append("the package names another verifier key than the pinned one")

    say("checkpoint")
    cp = _open_checkpoint(res, "checkpoint", log, key, str(log.get("origin")))
    res.tree_size = cp.size if cp else None

    # The export leaf first: only a file list it proves (sizes signed by the archive) is
    # hashed in full. Otherwise the sizes are a forger's, and a listed zip bomb would cost
    # minutes of inflating per megabyte of package (1 GB of zeros deflate to 1 MB).
    say("export leaf")
    before = len(res.failures)
    _check_export(manifest, cp, key, res)
    proven = cp is not None and len(res.failures) == before

    say("files")
    listed = _check_files(zf, manifest["files"], res, proven)

    say("records")
    raw_refs: dict[tuple[str, str], str] = {}
    attachments: dict[str, str] = {}
    for rec in manifest["records"]:
        _check_record(zf, rec, cp, listed, res, raw_refs)
        for att in rec["attachments"]:
            attachments[att["path"]] = att["bates"]
            if listed.get(att["path"]) != att["sha256"]:
                res.fail(att["path"], "attachment hash differs from the file list")
        res.records += 1
        res.attachments += len(rec["attachments"])

    say("raw batches")
    _check_raw(zf, manifest["raw_batches"], listed, raw_refs, res)

    say("load file")
    _check_loadfile(zf, manifest["records"], attachments, res)


def _check_files(
    zf: zipfile.ZipFile, files: list[dict[str, Any]], res: VerifyResult, proven: bool
) -> dict[str, str]:
    """Hash every listed member against its line. ``proven``: the export leaf proves the
    list, so its sizes bound the work; unproven, a member listed as inflating past
    MAX_RATIO times its compressed size is named, not inflated (the package fails anyway)."""
    listed: dict[str, str] = {}
    members = [i.filename for i in zf.infolist()]
    if len(set(members)) != len(members):
        res.fail("package", "the zip holds a file name twice")
    for name in members:
        why = _unsafe_name(name)
        if why is not None:
            res.fail(repr(name), f"unsafe member name ({why})")
    present = set(members)
    for f in files:
        path = str(f["path"])
        listed[path] = str(f["sha256"])
        if path not in present:
            res.fail(path, "listed in the manifest but missing")
            continue
        want = int(f["size"])
        if not proven and want > max(SMALL_MEMBER, MAX_RATIO * zf.getinfo(path).compress_size):
            res.fail(path, f"not hashed: listed as {want} bytes, past {MAX_RATIO} times its "
                     "compressed size, and the export leaf does not prove the file list")
            continue
        try:
            digest, size = _hash_member(zf, path, max(want, 0))
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                RuntimeError) as exc:  # CRC or deflate error, unsupported or encrypted
            res.fail(path, f"unreadable: {exc}")
            continue
        if digest != f["sha256"]:
            res.fail(path, f"SHA-256 {digest} differs from the manifest's {f['sha256']}")
        elif size != f["size"]:
            res.fail(path, f"size {size} differs from the manifest's {f['size']}")
        res.files += 1
    for name in sorted(present - set(listed) - {layout.MANIFEST}):
        res.fail(name, "in the zip but not listed in the manifest")
    return listed


def _check_record(
    zf: zipfile.ZipFile,
    rec: dict[str, Any],
    cp: Checkpoint | None,
    listed: Mapping[str, str],
    res: VerifyResult,
    raw_refs: dict[tuple[str, str], str],
) -> None:
    rid = str(rec["record_id"])
    native = str(rec["native"])
    if native != layout.record_native(rid):
        res.fail(rid, f"native path {native} is not the record's")
        return
    try:
        data = _read(zf, native, MAX_RECORD_BYTES)
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, _MemberTooLarge) as exc:
        res.fail(rid, f"stored bytes unreadable: {exc}")
        return
    sha = hashlib.sha256(data).hexdigest()
    if sha != rec["sha256"] or listed.get(native) != sha:
        res.fail(rid, "record bytes do not match the record hash")
    try:
        entry_bytes = _b64(rec["entry"])
        entry = parse_entry(entry_bytes)
        proof = [_b64(p) for p in rec["proof"]]
    except (ValueError, LedgerError) as exc:
        res.fail(rid, f"log entry unreadable: {getattr(exc, 'message', exc)}")
        return
    f = entry.fields
    if entry.kind is not EntryKind.RECORD:
        res.fail(rid, f"log entry is a {entry.kind} entry, not a record entry")
    if f.get("sha256") != sha:
        res.fail(rid, "record bytes do not hash to the log entry's sha256")
    if f.get("key") != rec["object_key"] or f.get("version_id") != rec["version_id"]:
        res.fail(rid, "log entry names another object key or version")
    if f.get("size") not in (None, len(data)):
        res.fail(rid, "record size differs from the log entry's")
    try:
        header = _parse_json(native, data)
        if header.get("record_id") != rid:
            res.fail(rid, "the stored record is another record")
        raw = header.get("raw")
        if isinstance(raw, dict) and "key" in raw:
            raw_refs[(str(raw["key"]), str(raw.get("version_id")))] = str(raw.get("sha256"))
    except _MemberTooLarge as exc:
        res.fail(rid, f"stored record unparsed: {exc}")
    except (ValueError, AttributeError, RecursionError):
        res.fail(rid, "stored record is not JSON")
    if cp is not None:
        try:
            verify_inclusion(int(rec["leaf_index"]), cp.size, hash_leaf(entry_bytes), proof,
                             cp.root_hash)  # fmt: skip
        except LedgerError as exc:
            res.fail(rid, f"inclusion proof fails: {exc.message}")


def _check_raw(
    zf: zipfile.ZipFile,
    batches: list[dict[str, Any]],
    listed: Mapping[str, str],
    raw_refs: Mapping[tuple[str, str], str],
    res: VerifyResult,
) -> None:
    for b in batches:
        key, path = str(b["key"]), str(b["path"])
        try:
            data = _read(zf, path)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError, _MemberTooLarge) as exc:
            res.fail(path, f"raw batch unreadable: {exc}")
            continue
        sha = hashlib.sha256(data).hexdigest()
        named = raw_refs.get((key, str(b["version_id"])))
        if named is None:
            res.fail(path, "no record of the package names this raw batch")
        elif named != sha:
            res.fail(path, "raw batch bytes differ from what its records name")
        try:
            hashes = slot_hashes(data)
        except ExportError as exc:
            res.fail(path, exc.message)
            continue
        for slot in b["slots"]:
            spath = str(slot["path"])
            want = hashes.get(int(slot["index"]))
            got = listed.get(spath)
            if want is None or got != want:
                res.fail(spath, "decrypted slot does not match the batch header's SHA-256")
            res.raw_slots += 1
        res.raw_batches += 1


def _check_export(
    manifest: Mapping[str, Any], cp: Checkpoint | None, key: Verifier, res: VerifyResult
) -> None:
    ex = manifest["export"]
    digest = records_digest(manifest["records"])
    if ex.get("records_sha256") != digest:
        res.fail("export", "records_sha256 is not the digest of the manifest's record list")
    try:
        entry_bytes = _b64(ex["entry"])
        entry = parse_entry(entry_bytes)
        proof = [_b64(p) for p in ex["proof"]]
        consistency = [_b64(p) for p in ex["consistency"]]
    except (ValueError, LedgerError) as exc:
        res.fail("export", f"export leaf unreadable: {getattr(exc, 'message', exc)}")
        return
    if entry.kind is not EntryKind.EXPORT:
        res.fail("export", f"the export leaf is a {entry.kind} entry")
    if entry.fields.get("records_sha256") != digest:
        res.fail("export", "the logged export names another record list")
    if entry.fields.get("records") != len(manifest["records"]):
        res.fail("export", "the logged export names another record count")
    if entry.fields.get("case") != manifest["case"]["id"]:
        res.fail("export", "the logged export names another case")
    _check_bound(manifest, entry.fields, res)
    later = _open_checkpoint(res, "export checkpoint", ex["checkpoint"], key,
                             str(manifest["log"]["origin"]))  # fmt: skip
    if later is None:
        return
    res.export_tree_size = later.size
    try:
        verify_inclusion(int(ex["leaf_index"]), later.size, hash_leaf(entry_bytes), proof,
                         later.root_hash)  # fmt: skip
    except LedgerError as exc:
        res.fail("export", f"export leaf inclusion fails: {exc.message}")
    if cp is not None:
        try:
            verify_consistency(cp.size, later.size, cp.root_hash, later.root_hash, consistency)
        except LedgerError as exc:
            res.fail("export", f"the later checkpoint is not consistent: {exc.message}")


def _check_bound(manifest: Mapping[str, Any], fields: Mapping[str, Any],
                 res: VerifyResult) -> None:  # fmt: skip
    """The leaf must bind the file list, the raw batch list and the manifest's head: the
    record list alone proves only the sealed natives, and a reviewer reads the text,
    RSMF, transcripts and load file."""
    if not any(k in fields for k in _LEAF_BINDS):
        res.fail("export", "the logged export does not bind the package's files (made "
                 "before exports named files_sha256): text, RSMF, transcripts, load file "
                 "and chain of custody are unproven")  # fmt: skip
        return
    got = {"files_sha256": records_digest(manifest["files"]),
           "raw_batches_sha256": records_digest(manifest["raw_batches"]),
           "head_sha256": head_digest(manifest)}  # fmt: skip
    what = {"files_sha256": "file list", "raw_batches_sha256": "raw batch list",
            "head_sha256": "manifest head (case, exporter, query, time zone, counts, log)"}
    for k in _LEAF_BINDS:
        if fields.get(k) != got[k]:
            res.fail("export", f"the logged export names another {what[k]}")


def _check_loadfile(
    zf: zipfile.ZipFile,
    records: list[dict[str, Any]],
    attachments: Mapping[str, str],
    res: VerifyResult,
) -> None:
    try:
        data = _read(zf, layout.LOADFILE)
        _parse_budget(layout.LOADFILE, data, (dat.SEP.encode(), dat.EOL.encode()))
        _, rows = dat.parse(data.decode("utf-8"))
    except (KeyError, UnicodeDecodeError, ExportError, zipfile.BadZipFile, OSError, EOFError,
            _MemberTooLarge) as exc:  # fmt: skip
        res.fail(layout.LOADFILE, f"unreadable: {getattr(exc, 'message', exc)}")
        return
    want_records = {str(r["record_id"]): str(r["bates"]) for r in records}
    got_records = {r["RECORDID"]: r["BEGBATES"] for r in rows if r["DOCTYPE"] == "record"}
    got_atts = {r["NATIVEPATH"]: r["BEGBATES"] for r in rows if r["DOCTYPE"] == "attachment"}
    if got_records != want_records:
        res.fail(layout.LOADFILE, "its records or their Bates numbers differ from the manifest")
    if got_atts != dict(attachments):
        res.fail(layout.LOADFILE, "its attachments differ from the manifest")


def iter_triples(manifest: Mapping[str, Any]) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """(leaf index, entry bytes, proof) of every record, for cross-checks."""
    for rec in manifest["records"]:
        yield int(rec["leaf_index"]), _b64(rec["entry"]), [_b64(p) for p in rec["proof"]]
