"""Re-verify the whole archive against its proof log (the ``fsck`` of the log).

``verify_log`` recomputes every leaf hash from the stored entries and the tree from the
leaves, compares them with the tiles and the sequencing state, checks each stored
checkpoint's signature and its consistency with the next, re-reads every object version
the log names (by version id: SHA-256 and size), compares legal hold and retention with
the latest logged state of objects that have hold / retention events, and lists the
versions under every prefix the log names: a delete marker, a version the log does not
know, or a disposed version still present is a finding. Object reads run in a thread
pool. Nothing here raises for a bad archive: every problem is a :class:`Finding`.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from archiver.ledger import merkle, tiles
from archiver.ledger.checkpoint import Checkpoint, open_checkpoint
from archiver.ledger.entry import OBJECT_KINDS, Entry, EntryKind, parse_entry
from archiver.ledger.errors import LedgerError
from archiver.ledger.note import Verifier
from archiver.store.errors import ObjectNotFound, StoreError
from archiver.store.port import ObjectStore


class FindingKind(StrEnum):
    LOG_UNREADABLE = "log:unreadable"
    ENTRY_INVALID = "entry:invalid"
    LEAF_MISMATCH = "tile:leaf_mismatch"
    TILE_MISMATCH = "tile:node_mismatch"
    ROOT_MISMATCH = "log:root_mismatch"
    CHECKPOINT_INVALID = "checkpoint:invalid"
    CHECKPOINT_INCONSISTENT = "checkpoint:inconsistent"
    OBJECT_MISSING = "object:missing"
    OBJECT_UNREADABLE = "object:unreadable"
    HASH_MISMATCH = "object:hash_mismatch"
    SIZE_MISMATCH = "object:size_mismatch"
    HOLD_MISMATCH = "object:hold_mismatch"
    RETENTION_MISMATCH = "object:retention_mismatch"
    DELETE_MARKER = "object:delete_marker"
    EXTRA_VERSION = "object:extra_version"
    DISPOSED_PRESENT = "object:disposed_present"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    key: str | None
    version_id: str | None
    expected: str | None
    found: str | None
    message: str


class LogReader(Protocol):
    """What verify needs from :class:`archiver.ledger.log.TransparencyLog`."""

    prefix: str
    origin: str

    def snapshot(self) -> tuple[int, bytes]: ...

    def entries(self, start: int, end: int, tree_size: int | None = None) -> list[bytes]: ...

    def tile_hashes(self, level: int, index: int, tree_size: int | None = None) -> list[bytes]: ...

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]: ...


@dataclass
class _Expect:
    """Latest logged state of one object version."""

    sha256: str
    size: int | None
    retain_until: str | None
    hold: bool | None = None  # None: no hold event logged
    lock_logged: bool = False


@dataclass
class _Scan:
    objects: dict[tuple[str, str], _Expect] = field(default_factory=dict)
    disposed: set[tuple[str, str]] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)


def _prefix_of(key: str) -> str:
    head, sep, _ = key.partition("/")
    return head + sep if sep else key


def _scan_entry(e: Entry, scan: _Scan) -> None:
    key, vid = e.key, e.version_id
    if key is None or vid is None:
        return
    ident = (key, vid)
    f = e.fields
    if e.kind in OBJECT_KINDS:
        size = f.get("size")
        retain = f.get("retain_until")
        scan.objects[ident] = _Expect(
            str(f["sha256"]),
            size if isinstance(size, int) else None,
            retain if isinstance(retain, str) else None,
        )
        scan.prefixes.add(_prefix_of(key))
    elif ident in scan.objects:
        exp = scan.objects[ident]
        if e.kind is EntryKind.HOLD_PLACED:
            exp.hold, exp.lock_logged = True, True
        elif e.kind is EntryKind.HOLD_RELEASED:
            exp.hold, exp.lock_logged = False, True
        elif e.kind is EntryKind.RETENTION_EXTENDED and isinstance(f.get("retain_until"), str):
            exp.retain_until, exp.lock_logged = str(f["retain_until"]), True
    if e.kind is EntryKind.DISPOSED:
        scan.disposed.add(ident)


def _check_tree(
    log: LogReader, size: int, root: bytes, entries: Sequence[bytes], cp_sizes: Iterable[int]
) -> tuple[list[Finding], dict[int, bytes]]:
    """Leaf hashes vs level-0 tiles, higher tiles vs recomputed nodes, root vs state."""
    out: list[Finding] = []
    nodes: dict[tuple[int, int], bytes] = {}

    def keep(level: int, index: int, h: bytes) -> None:
        if level % tiles.TILE_HEIGHT == 0:
            nodes[(level // tiles.TILE_HEIGHT, index)] = h

    wanted = sorted(set(cp_sizes))
    roots: dict[int, bytes] = {}
    cr = merkle.CompactRange(on_node=keep)
    pos = 0
    for s in [*wanted, size]:
        if s > size:
            continue
        cr.extend(merkle.hash_leaf(e) for e in entries[pos:s])
        pos = s
        roots[s] = cr.root()
    if roots.get(size, merkle.EMPTY_ROOT) != root:
        out.append(
            Finding(
                FindingKind.ROOT_MISMATCH,
                None,
                None,
                root.hex(),
                roots[size].hex(),
                f"root of {size} entries differs from the log state",
            )
        )
    for ref in tiles.tiles_for_size(size):
        got = log.tile_hashes(ref.level, ref.index, size)
        for j, h in enumerate(got):
            want = nodes.get((ref.level, ref.index * tiles.TILE_WIDTH + j))
            if want != h:
                kind = FindingKind.LEAF_MISMATCH if ref.level == 0 else FindingKind.TILE_MISMATCH
                out.append(
                    Finding(
                        kind,
                        log.prefix + ref.path,
                        None,
                        want.hex() if want else None,
                        h.hex(),
                        f"hash {j} of tile {ref.path} does not match entries",
                    )
                )
    return out, roots


def _check_checkpoints(
    log: LogReader, objects: ObjectStore, keys: Sequence[Verifier], roots: dict[int, bytes]
) -> list[Finding]:
    out: list[Finding] = []
    cps: list[tuple[str, Checkpoint]] = []
    for key in objects.list_keys(f"{log.prefix}checkpoint/"):
        versions = [
            v for v in objects.list_versions(key) if v.key == key and not v.is_delete_marker
        ]
        if not versions:
            continue  # delete markers are reported by the listing pass
        vid = versions[0].version_id
        try:
            cp = open_checkpoint(objects.get(key, vid).decode(), keys, log.origin)
        except (LedgerError, StoreError, UnicodeDecodeError) as exc:
            out.append(Finding(FindingKind.CHECKPOINT_INVALID, key, vid, None, None, str(exc)))
            continue
        if roots.get(cp.size) != cp.root_hash:
            out.append(
                Finding(
                    FindingKind.CHECKPOINT_INCONSISTENT,
                    key,
                    vid,
                    (roots.get(cp.size) or b"").hex(),
                    cp.root_hash.hex(),
                    f"checkpoint {cp.size} root differs from the entries",
                )
            )
        cps.append((key, cp))
    cps.sort(key=lambda kc: kc[1].size)
    for (_, old), (key, new) in itertools.pairwise(cps):
        try:
            proof = log.consistency_proof(old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
        except LedgerError as exc:
            out.append(
                Finding(
                    FindingKind.CHECKPOINT_INCONSISTENT,
                    key,
                    None,
                    str(old.size),
                    str(new.size),
                    f"not consistent with previous checkpoint: {exc}",
                )
            )
    return out


def _check_object(
    objects: ObjectStore, ident: tuple[str, str], exp: _Expect, lock_check: bool
) -> list[Finding]:
    key, vid = ident
    try:
        data = objects.get(key, vid)
    except ObjectNotFound:
        return [
            Finding(
                FindingKind.OBJECT_MISSING,
                key,
                vid,
                exp.sha256,
                None,
                "logged object version is missing",
            )
        ]
    except StoreError as exc:
        return [Finding(FindingKind.OBJECT_UNREADABLE, key, vid, exp.sha256, None, str(exc))]
    out: list[Finding] = []
    digest = hashlib.sha256(data).hexdigest()
    if digest != exp.sha256:
        out.append(
            Finding(
                FindingKind.HASH_MISMATCH,
                key,
                vid,
                exp.sha256,
                digest,
                "object bytes differ from the logged SHA-256",
            )
        )
    if exp.size is not None and len(data) != exp.size:
        out.append(
            Finding(
                FindingKind.SIZE_MISMATCH,
                key,
                vid,
                str(exp.size),
                str(len(data)),
                "object size differs from the log",
            )
        )
    if lock_check:
        try:
            info = objects.stat(key, vid)
        except StoreError as exc:
            return [*out, Finding(FindingKind.OBJECT_UNREADABLE, key, vid, None, None, str(exc))]
        want_hold = bool(exp.hold)
        if info.legal_hold != want_hold:
            out.append(
                Finding(
                    FindingKind.HOLD_MISMATCH,
                    key,
                    vid,
                    str(want_hold),
                    str(info.legal_hold),
                    "legal hold differs from the log",
                )
            )
        if exp.retain_until is not None:
            # S3 keeps retain-until at whole seconds; compare at that precision.
            want = datetime.fromisoformat(exp.retain_until.replace("Z", "+00:00"))
            want = want.replace(microsecond=0)
            got = info.retention.retain_until if info.retention else None
            if got is None or got < want:
                out.append(
                    Finding(
                        FindingKind.RETENTION_MISMATCH,
                        key,
                        vid,
                        exp.retain_until,
                        got.isoformat() if got else None,
                        "retention is shorter than the log says",
                    )
                )
    return out


def _check_listing(log: LogReader, objects: ObjectStore, scan: _Scan, prefix: str) -> list[Finding]:
    out: list[Finding] = []
    seen_log_keys: set[str] = set()
    for v in objects.list_versions(prefix):
        ident = (v.key, v.version_id)
        if v.is_delete_marker:
            out.append(
                Finding(
                    FindingKind.DELETE_MARKER,
                    v.key,
                    v.version_id,
                    None,
                    "delete marker",
                    "a delete marker hides a kept object",
                )
            )
        elif ident in scan.disposed:
            out.append(
                Finding(
                    FindingKind.DISPOSED_PRESENT,
                    v.key,
                    v.version_id,
                    "absent",
                    "present",
                    "logged as disposed but still stored",
                )
            )
        elif prefix == log.prefix and not v.key.startswith(f"{log.prefix}staging/"):
            if v.key in seen_log_keys:
                out.append(
                    Finding(
                        FindingKind.EXTRA_VERSION,
                        v.key,
                        v.version_id,
                        None,
                        None,
                        "log object has more than one version",
                    )
                )
            seen_log_keys.add(v.key)
        elif ident not in scan.objects and not v.key.startswith(log.prefix):
            out.append(
                Finding(
                    FindingKind.EXTRA_VERSION,
                    v.key,
                    v.version_id,
                    None,
                    None,
                    "object version not in the log",
                )
            )
    return out


def verify_log(
    log_reader: LogReader,
    objects: ObjectStore,
    public_keys: Sequence[Verifier],
    sample: int | None = None,
    *,
    concurrency: int = 16,
    lock_check: Literal["logged", "all"] = "logged",
) -> list[Finding]:
    """Re-verify log and archive; return every finding (empty list = all good).

    ``sample`` re-reads only that many random object versions (the log, checkpoints and
    listings are always checked in full). ``lock_check="all"`` also stats objects with
    no logged hold/retention event (one more request per object)."""
    size, root = log_reader.snapshot()
    try:
        raw = log_reader.entries(0, size)
    except (LedgerError, StoreError) as exc:
        return [Finding(FindingKind.LOG_UNREADABLE, None, None, None, None, str(exc))]
    findings: list[Finding] = []
    scan = _Scan()
    for i, data in enumerate(raw):
        try:
            _scan_entry(parse_entry(data), scan)
        except LedgerError as exc:
            findings.append(Finding(FindingKind.ENTRY_INVALID, None, None, None, str(i), str(exc)))
    todo = [(k, v) for k, v in scan.objects.items() if k not in scan.disposed]
    if sample is not None and sample < len(todo):
        todo = random.sample(todo, sample)
    prefixes = sorted(scan.prefixes | {log_reader.prefix})
    # Object reads (the pool), version listings (one thread per prefix, up to 4) and the
    # tree/checkpoint checks (this thread) overlap: each is bound by a different wait.
    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        ThreadPoolExecutor(max_workers=min(4, len(prefixes))) as lister,
    ):
        reads = pool.map(
            lambda item: _check_object(
                objects, item[0], item[1], lock_check == "all" or item[1].lock_logged
            ),
            todo,
        )
        listings = lister.map(lambda p: _check_listing(log_reader, objects, scan, p), prefixes)
        try:
            cp_sizes = _checkpoint_sizes(log_reader, objects)
            tree_findings, roots = _check_tree(log_reader, size, root, raw, cp_sizes)
            findings += tree_findings
            findings += _check_checkpoints(log_reader, objects, public_keys, roots)
        except (LedgerError, StoreError) as exc:
            findings.append(Finding(FindingKind.LOG_UNREADABLE, None, None, None, None, str(exc)))
        for r in reads:
            findings += r
        for r in listings:
            findings += r
    return findings


def _checkpoint_sizes(log: LogReader, objects: ObjectStore) -> list[int]:
    prefix = f"{log.prefix}checkpoint/"
    out = []
    for key in objects.list_keys(prefix):
        tail = key[len(prefix) :]
        if tail.isdigit():
            out.append(int(tail))
    return out
