"""Re-verify the whole archive against its proof log (the ``fsck`` of the log).

``verify_archive`` recomputes every leaf hash from the stored entries and the tree from the
leaves, compares them with the tiles and the sequencing state, checks each stored
checkpoint's signature and its consistency with the next (each checkpoint but the newest
is also a logged object, named by the next signing; the newest is the signer's pointer,
``latest_checkpoint``), re-reads every object version
the log names (by version id: SHA-256 and size), compares legal hold and retention with
the latest logged state of objects that have hold / retention events, and lists the
versions under every prefix the log names: a delete marker, a version the log does not
know, or a disposed version still present is a finding. Nothing here raises for a bad
archive: every problem is a :class:`Finding`.

Speed: object reads (a thread pool) and the version listings (a few threads) start while
the entries are still being parsed, and the tree and checkpoint checks run while they
finish, so no phase waits alone on one core (``bench/log.py`` measures the result
against a plain read-and-hash of the same objects).

Live archives: an object is stored before its leaf is appended (an in-flight record or
audit batch), so a version of a key the log does not name yet, written less than
``grace`` seconds before the log snapshot verify reads, is *pending*, not a finding; so
is a checkpoint signed after that snapshot. Older ones stay findings, and so does any
unlogged version of a key the log already names (keys are write-once, so no legitimate
write produces one).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from archiver.keyspace import checkpoint_prefix, log_staging_prefix
from archiver.ledger import merkle, tiles
from archiver.ledger.checkpoint_format import Checkpoint, open_checkpoint
from archiver.ledger.entry import OBJECT_KINDS, Entry, EntryKind, parse_entry
from archiver.ledger.errors import LedgerError
from archiver.ledger.note import Verifier
from archiver.ledger.verify_objects import (
    Expect,
    Fetched,
    Finding,
    FindingKind,
    check_lock,
    compare,
    fetch,
)
from archiver.store.errors import StoreError
from archiver.store.port import ObjectStore, VersionEntry

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "Finding",
    "FindingKind",
    "VerifiableLog",
    "VerifyResult",
    "verify_archive",
]

DEFAULT_GRACE_SECONDS = 300.0


class VerifiableLog(Protocol):
    """What verify needs from :class:`archiver.ledger.log.TransparencyLog`: more than the
    :class:`archiver.ledger.ports.LogReader` port (tiles, proofs, its object prefix), as
    it re-checks the stored tree itself."""

    prefix: str
    origin: str

    def snapshot(self) -> tuple[int, bytes]: ...

    def entries(self, start: int, end: int, tree_size: int | None = None) -> list[bytes]: ...

    def tile_hashes(self, level: int, index: int, tree_size: int | None = None) -> list[bytes]: ...

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class VerifyResult:
    findings: list[Finding]
    pending: list[Finding]  # kind PENDING: unlogged but inside the grace window
    tree_size: int
    snapshot_at: datetime  # when verify read the log state the grace counts back from


@dataclass
class _Scan:
    objects: dict[tuple[str, str], Expect] = field(default_factory=dict)
    disposed: set[tuple[str, str]] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)  # keys with a logged object version


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
        scan.objects[ident] = Expect(
            str(f["sha256"]),
            size if isinstance(size, int) else None,
            retain if isinstance(retain, str) else None,
        )
        scan.prefixes.add(_prefix_of(key))
        scan.keys.add(key)
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
    log: VerifiableLog, size: int, root: bytes, entries: Sequence[bytes], cp_sizes: Iterable[int]
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


@dataclass(frozen=True, slots=True)
class _StoredCheckpoint:
    key: str
    version_id: str
    size: int
    last_modified: datetime | None


def _stored_checkpoints(log: VerifiableLog, objects: ObjectStore) -> list[_StoredCheckpoint]:
    """The newest object version of each checkpoint key, from ONE listing of the
    checkpoint prefix (a listing per checkpoint made verify quadratic in their number).
    Keys whose latest version is a delete marker are left to the listing pass."""
    prefix = checkpoint_prefix(log.prefix)
    out: list[_StoredCheckpoint] = []
    latest_is_marker: dict[str, bool] = {}
    for v in objects.list_versions(prefix):
        if v.key not in latest_is_marker:
            latest_is_marker[v.key] = v.is_delete_marker
            if v.is_delete_marker:
                continue
        elif v.is_delete_marker or latest_is_marker[v.key] or (out and out[-1].key == v.key):
            continue
        tail = v.key[len(prefix) :]
        if tail.isdigit():
            out.append(_StoredCheckpoint(v.key, v.version_id, int(tail), v.last_modified))
    return out


def _check_checkpoints(
    log: VerifiableLog,
    objects: ObjectStore,
    keys: Sequence[Verifier],
    roots: dict[int, bytes],
    stored: Sequence[_StoredCheckpoint],
    tree_size: int,
    cutoff: datetime,
) -> tuple[list[Finding], list[Finding]]:
    out: list[Finding] = []
    pending: list[Finding] = []
    cps: list[tuple[str, Checkpoint]] = []
    for sc in stored:
        key, vid = sc.key, sc.version_id
        try:
            cp = open_checkpoint(objects.get(key, vid).decode(), keys, log.origin)
        except (LedgerError, StoreError, UnicodeDecodeError) as exc:
            out.append(Finding(FindingKind.CHECKPOINT_INVALID, key, vid, None, None, str(exc)))
            continue
        if cp.size > tree_size and _fresh(sc.last_modified, cutoff):
            # Signed after our snapshot of the log (its signature is checked above).
            pending.append(
                Finding(
                    FindingKind.PENDING,
                    key,
                    vid,
                    None,
                    str(cp.size),
                    f"checkpoint newer than the log snapshot of {tree_size} entries",
                )
            )
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
    return out, pending


def _fresh(last_modified: datetime | None, cutoff: datetime) -> bool:
    if last_modified is None:
        return False
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=UTC)
    return last_modified > cutoff


def _check_listing(
    log: VerifiableLog, scan: _Scan, prefix: str, rows: Iterable[VersionEntry], cutoff: datetime,
    batch_prefix: str | None = None,
) -> tuple[list[Finding], list[Finding]]:
    out: list[Finding] = []
    pending: list[Finding] = []
    seen_log_keys: set[str] = set()
    for v in rows:
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
        elif prefix == log.prefix and not v.key.startswith(log_staging_prefix(log.prefix)):
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
            if v.key not in scan.keys and _fresh(v.last_modified, cutoff):
                pending.append(
                    Finding(
                        FindingKind.PENDING,
                        v.key,
                        v.version_id,
                        None,
                        v.last_modified.isoformat() if v.last_modified else None,
                        "not in the log yet: written within the grace window",
                    )
                )
                continue
            # A key the log never named (a new version of a logged key is tampering).
            if (batch_prefix is not None and v.key.startswith(batch_prefix)
                    and v.key not in scan.keys):
                out.append(
                    Finding(
                        FindingKind.BATCH_STUCK,
                        v.key,
                        v.version_id,
                        "processed",
                        v.last_modified.isoformat() if v.last_modified else None,
                        "raw batch stuck in processing: captured, never logged",
                    )
                )
                continue
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
    return out, pending


def verify_archive(
    log_reader: VerifiableLog,
    objects: ObjectStore,
    public_keys: Sequence[Verifier],
    sample: int | None = None,
    *,
    concurrency: int = 16,
    lock_check: Literal["logged", "all"] = "logged",
    grace: float = DEFAULT_GRACE_SECONDS,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    latest_checkpoint: tuple[str, str] | None = None,
    batch_prefix: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> VerifyResult:
    """Re-verify log and archive; every finding (none = all good) and every pending one.

    ``sample`` re-reads only that many random object versions (the log, checkpoints and
    listings are always checked in full). ``lock_check="all"`` also stats objects with
    no logged hold/retention event (one more request per object). ``grace`` (seconds,
    >= 0) is the window before the log snapshot in which an unlogged version of a key the
    log does not name is pending (module docstring). ``latest_checkpoint``: the
    ``(key, version_id)`` the signer's pointer names (the one checkpoint no entry names
    yet); its absence is a finding. ``batch_prefix``: where raw capture batches live;
    one the log does not name past the grace window is a ``batch:stuck`` finding (every
    batch's leaf is appended when it is processed), and that prefix is always listed.
    ``progress(done, total)`` is called as each object version is judged."""
    if grace < 0:
        raise ValueError("grace must be >= 0 seconds")
    snapshot_at = clock()
    cutoff = snapshot_at - timedelta(seconds=grace)
    size, root = log_reader.snapshot()
    try:
        raw = log_reader.entries(0, size)
    except (LedgerError, StoreError) as exc:
        unreadable = Finding(FindingKind.LOG_UNREADABLE, None, None, None, None, str(exc))
        return VerifyResult([unreadable], [], size, snapshot_at)
    findings: list[Finding] = []
    pending: list[Finding] = []
    scan = _Scan()
    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        ThreadPoolExecutor(max_workers=4) as lister,
    ):
        listed: dict[str, Future[list[VersionEntry]]] = {}
        fetched: dict[tuple[str, str], Future[Fetched]] = {}

        def start_listing(prefix: str) -> None:
            if prefix not in listed:
                listed[prefix] = lister.submit(lambda: list(objects.list_versions(prefix)))

        start_listing(log_reader.prefix)
        if batch_prefix is not None:
            start_listing(batch_prefix)
        for i, data in enumerate(raw):
            try:
                entry = parse_entry(data)
            except LedgerError as exc:
                findings.append(
                    Finding(FindingKind.ENTRY_INVALID, None, None, None, str(i), str(exc))
                )
                continue
            _scan_entry(entry, scan)
            if entry.kind in OBJECT_KINDS and entry.key and entry.version_id:
                start_listing(_prefix_of(entry.key))
                ident = (entry.key, entry.version_id)
                # A full run reads every logged version: start now, judge after the scan.
                if sample is None and ident not in fetched:
                    fetched[ident] = pool.submit(fetch, objects, *ident)
        todo = [(k, v) for k, v in scan.objects.items() if k not in scan.disposed]
        if sample is not None and sample < len(todo):
            todo = random.sample(todo, sample)
        for ident, _ in todo:
            if ident not in fetched:
                fetched[ident] = pool.submit(fetch, objects, *ident)
        locks = [
            pool.submit(check_lock, objects, *ident, exp)
            for ident, exp in todo
            if lock_check == "all" or exp.lock_logged
        ]
        try:
            stored = _stored_checkpoints(log_reader, objects)
            tree_findings, roots = _check_tree(
                log_reader, size, root, raw, (c.size for c in stored)
            )
            findings += tree_findings
            cp_findings, cp_pending = _check_checkpoints(
                log_reader, objects, public_keys, roots, stored, size, cutoff
            )
            findings += cp_findings
            pending += cp_pending
        except (LedgerError, StoreError) as exc:
            findings.append(Finding(FindingKind.LOG_UNREADABLE, None, None, None, None, str(exc)))
        for done, (ident, exp) in enumerate(todo, 1):
            findings += compare(*ident, exp, fetched[ident].result())
            if progress is not None:
                progress(done, len(todo))
        if latest_checkpoint is not None and latest_checkpoint not in scan.objects:
            got = fetch(objects, *latest_checkpoint)
            if got.missing or got.error:
                findings.append(
                    Finding(
                        FindingKind.OBJECT_MISSING,
                        latest_checkpoint[0],
                        latest_checkpoint[1],
                        "present",
                        got.error or "absent",
                        "the latest signed checkpoint (the signer's pointer) cannot be read",
                    )
                )
        for lock in locks:
            findings += lock.result()
        for prefix in sorted(listed):
            found, waiting = _check_listing(
                log_reader, scan, prefix, listed[prefix].result(), cutoff, batch_prefix
            )
            findings += found
            pending += waiting
    return VerifyResult(findings, pending, size, snapshot_at)
