"""The proof log: an RFC 6962 tree stored as C2SP tlog-tiles in the evidence store.

Sequencing (safe for several processes, survives SIGKILL at any point):

* The log state lives in the StateStore under one key, ``log/state``: JSON with the
  committed ``size``, ``root``, the right-edge ``compact`` range and at most one
  ``pending`` batch. Every change is a compare-and-swap on that key.
* ``append`` first writes its entries to a staging key ``log/staging/<batch id>``
  in the StateStore, then **claims** the range ``[size, size+k)`` by CAS-writing
  ``pending = {id, start, count, staging}``. Only one batch can be pending, so the
  claim is the sequencing decision and every entry is sequenced once. A small batch
  (``INLINE_MAX`` bytes at most) is staged in the claim itself (``pending.entries``,
  ``staging`` empty): two state round trips fewer, the same guarantees.
* An appender remembers the state and token of its own last commit and claims from it
  without reading the state first; a stale memory only loses the claim's CAS, and the
  loser re-reads as always.
* The claimant writes the entry bundles and the full and partial hash tiles of the new
  tree to the evidence store (write-once, under ``retention_for_log()``). A write that
  finds the object already there with the *same bytes* counts as success; different
  bytes raise :class:`LogCorrupted`. Then it **commits** ``size+k`` with the new root
  and compact range (CAS, ``pending = null``).
* A loser of a CAS re-reads and retries. An appender that sees the same pending batch
  (same CAS token) for longer than ``stale_after`` seconds assumes its owner died and
  completes it from the staging key, which is deterministic and idempotent, before
  appending its own batch. If the owner was only slow, its own commit CAS then fails,
  it re-reads, sees its batch committed, and returns the same indices.
* Nothing is readable through the log before its commit: readers take the tree size
  from the state and address only the tiles that exist at that size.

Crash points: before the claim, the staging key is garbage (the entries were never
acknowledged); between claim and commit, the next appender completes the batch; after
commit, only the staging key is left behind. A caller whose ``append`` raised after the
claim cannot know whether its entries were sequenced (they will be, by a helper), so a
caller that retries passes ``once_since`` (the size it saved before the first attempt):
the retry then waits out or completes any pending batch and appends only what is not
already in the log since that size.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from archiver.keyspace import LOG_PREFIX, log_staging_key, log_state_key
from archiver.ledger import merkle, tiles
from archiver.ledger.errors import LedgerError, LogCorrupted, ProofError
from archiver.store.errors import ObjectExists, ObjectNotFound, PreconditionFailed, StoreError
from archiver.store.port import ObjectStore, Retention, StateStore

STATE_VERSION = 1
# Entries of one append up to this many bytes in all ride in the claim (``pending.entries``)
# instead of a staging key: every reader of the state reads them while it is pending.
INLINE_MAX = 64 * 1024


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


@dataclass(frozen=True, slots=True)
class Pending:
    id: str
    start: int
    count: int
    staging: str  # "" when the entries are inline
    owner: str = ""  # host:pid of the claimant, for operators (and the crash test)
    entries: tuple[bytes, ...] | None = None  # inline staging (a small batch)


@dataclass(frozen=True, slots=True)
class LogState:
    origin: str
    size: int
    root: bytes
    compact: tuple[bytes, ...]
    pending: Pending | None

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {
            "v": STATE_VERSION,
            "origin": self.origin,
            "size": self.size,
            "root": _b64(self.root),
            "compact": [_b64(h) for h in self.compact],
            "pending": None,
        }
        if self.pending is not None:
            p = self.pending
            obj["pending"] = {
                "id": p.id,
                "start": p.start,
                "count": p.count,
                "staging": p.staging,
                "owner": p.owner,
            }
            if p.entries is not None:
                obj["pending"]["entries"] = [_b64(e) for e in p.entries]
        return json.dumps(obj, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LogState:
        try:
            obj = json.loads(raw)
            p = obj["pending"]
            pending = (
                None
                if p is None
                else Pending(
                    str(p["id"]),
                    int(p["start"]),
                    int(p["count"]),
                    str(p["staging"]),
                    str(p.get("owner", "")),
                    None
                    if p.get("entries") is None
                    else tuple(_unb64(e) for e in p["entries"]),
                )
            )
            return cls(
                str(obj["origin"]),
                int(obj["size"]),
                _unb64(obj["root"]),
                tuple(_unb64(h) for h in obj["compact"]),
                pending,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LogCorrupted(f"unreadable log state: {exc}") from exc


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree whose leaves-level hashes are given (len a power of 2)."""
    row = list(hashes)
    while len(row) > 1:
        row = [merkle.hash_children(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


# What the log keeps of the objects it read or wrote, in bytes and in keys. Bounded by
# bytes, not only by count: an entry bundle is up to 256 entries of ~350 bytes (~90 KB),
# and an export reads every bundle of its scope once, so a count of 4,096 held 35 MB at
# 100,000 records (and would hold 350 MB at a million). 8 MiB still keeps ~1,000 hash
# tiles (8 KB): the right edge appends read, the upper tiles every proof reads.
CACHE_BYTES = 8 << 20
_VERSIONS_KEPT = 16384  # object key -> version id (~200 B each); else one listing a miss


class _LRU:
    """Least recently used, bounded by count and by total bytes of the values."""

    def __init__(self, capacity: int, max_bytes: int = CACHE_BYTES) -> None:
        self._d: OrderedDict[str, bytes] = OrderedDict()
        self._cap = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max_bytes:
            return  # would evict everything else for one value
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._d[key] = value
            self._bytes += len(value)
            while len(self._d) > self._cap or self._bytes > self._max_bytes:
                self._bytes -= len(self._d.popitem(last=False)[1])


class _Versions:
    """Object key -> version id of the log's objects, bounded (least recently used)."""

    def __init__(self, capacity: int | None = None) -> None:
        self._d: OrderedDict[str, str] = OrderedDict()
        self._cap = _VERSIONS_KEPT if capacity is None else capacity
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def __setitem__(self, key: str, version_id: str) -> None:
        with self._lock:
            self._d[key] = version_id
            self._d.move_to_end(key)
            while len(self._d) > self._cap:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


class TransparencyLog:
    """Append-only RFC 6962 log over an ObjectStore (tiles) and a StateStore (sequencing)."""

    def __init__(
        self,
        objects: ObjectStore,
        state: StateStore,
        origin: str,
        retention_for_log: Callable[[], Retention],
        *,
        prefix: str = LOG_PREFIX,
        stale_after: float = 30.0,
        poll_interval: float = 0.005,
        cache_size: int = 4096,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.objects = objects
        self.state = state
        self.origin = origin
        self.retention_for_log = retention_for_log
        self.prefix = prefix
        self.state_key = log_state_key(prefix)
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        self._cache = _LRU(cache_size, cache_bytes)
        self._versions = _Versions()
        self._seen: tuple[str, float] | None = None  # (token, first seen) of a pending batch
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        # The largest committed size this process has seen: the log never shrinks, so it
        # is a lower bound of the size at any later moment (``size_floor``).
        self._floor: int | None = None
        self._floor_lock = threading.Lock()
        # The state and token of this process's last commit: the next append claims from
        # it without a read (a stale one only loses the claim's compare-and-swap).
        self._last: tuple[LogState, str] | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ledger-put")

    def close(self) -> None:
        """Stop the writer threads (the log stays usable for reads)."""
        self._pool.shutdown(wait=True)

    # ---------------------------------------------------------------- state

    def _load(self) -> tuple[LogState, str]:
        while True:
            sv = self.state.get(self.state_key)
            if sv is not None:
                st = LogState.from_json(sv.value)
                if st.origin != self.origin:
                    raise LogCorrupted(f"log state is for origin {st.origin!r}")
                self._raise_floor(st.size)
                return st, sv.token
            empty = LogState(self.origin, 0, merkle.EMPTY_ROOT, (), None)
            # PreconditionFailed: another process created it first; read theirs.
            with contextlib.suppress(PreconditionFailed):
                self.state.put(self.state_key, empty.to_json(), if_absent=True)

    def snapshot(self) -> tuple[int, bytes]:
        """The committed ``(size, root)``, read together."""
        st, _ = self._load()
        return st.size, st.root

    def size(self) -> int:
        return self.snapshot()[0]

    def root(self) -> bytes:
        return self.snapshot()[1]

    def size_floor(self) -> int:
        """A size the log has reached by now: the largest this process saw committed (no
        round trip), or ``size()`` before it saw any. Enough for ``once_since``, which
        needs a size from before an attempt's first append, not the latest one."""
        with self._floor_lock:
            floor = self._floor
        return self.size() if floor is None else floor

    def _take_last(self) -> tuple[LogState, str] | None:
        """The remembered commit, forgotten as it is taken: of appenders running side by
        side in this process, one claims from it and the others read the state."""
        with self._floor_lock:
            last, self._last = self._last, None
        return last

    def _raise_floor(self, size: int) -> None:
        with self._floor_lock:
            if self._floor is None or size > self._floor:
                self._floor = size

    # ---------------------------------------------------------------- append

    def append(self, entries: Sequence[bytes], *, once_since: int | None = None) -> list[int]:
        """Sequence ``entries``; return their leaf indices. Durable when it returns.

        ``once_since``: the log size a caller saved before its first attempt at this same
        group of (distinct) entries. An entry already sequenced at or after that index (by
        an attempt that crashed, or by a helper that completed its dead claim) is not
        appended again; its existing index is returned. The check is made against the
        very state the claim swaps, so nothing can be sequenced in between.
        """
        if not entries:
            return []
        for e in entries:
            if len(e) > tiles.MAX_ENTRY_SIZE:
                raise LedgerError(f"entry of {len(e)} bytes exceeds {tiles.MAX_ENTRY_SIZE}")
        items = list(entries)
        # Leaf hashes only for the once-only check; a plain append needs none here.
        hashes = [merkle.hash_leaf(e) for e in items] if once_since is not None else []
        found: dict[bytes, int] = {}
        scanned = once_since
        staged: list[bytes] = []  # the entries of our current staging key, if any
        batch = staging = ""
        start: int | None = None
        remembered = self._take_last()
        while True:
            st, token = remembered if remembered is not None else self._load()
            remembered = None  # once: a lost claim re-reads
            if st.pending is not None:
                if staged and st.pending.id == batch:  # our claim landed, its reply was lost
                    start = self._complete(st, token, staged)
                    break
                self._wait_or_take_over(st, token)
                continue
            if scanned is not None and st.size > scanned:
                for offset, data in enumerate(self.entries(scanned, st.size)):
                    found.setdefault(merkle.hash_leaf(data), scanned + offset)
                scanned = st.size
            missing = (
                items
                if once_since is None
                else [e for e, h in zip(items, hashes, strict=True) if h not in found]
            )
            if not missing:
                break
            if missing != staged:
                if staging:
                    self._drop_staging(staging)
                batch = uuid.uuid4().hex
                staging = ""
                if sum(len(e) for e in missing) > INLINE_MAX:
                    staging = log_staging_key(self.prefix, batch)
                    self.state.put(staging, tiles.encode_bundle(missing), if_absent=True)
                staged = missing
            claim = LogState(
                st.origin,
                st.size,
                st.root,
                st.compact,
                Pending(batch, st.size, len(staged), staging, self._owner,
                        None if staging else tuple(staged)),
            )
            try:
                token = self.state.put(self.state_key, claim.to_json(), if_match=token)
            except PreconditionFailed:
                continue
            start = self._complete(claim, token, staged)
            break
        if staging:
            self._drop_staging(staging)
        if once_since is None:
            assert start is not None
            return list(range(start, start + len(items)))
        if start is not None:
            for offset, data in enumerate(staged):
                found[merkle.hash_leaf(data)] = start + offset
        return [found[h] for h in hashes]

    def _drop_staging(self, key: str) -> None:
        with contextlib.suppress(StoreError):  # leftover staging keys are harmless garbage
            self.state.delete(key)

    def _wait_or_take_over(self, st: LogState, token: str) -> None:
        now = time.monotonic()
        seen = self._seen
        if seen is None or seen[0] != token:
            self._seen = (token, now)
        elif now - seen[1] >= self.stale_after:
            assert st.pending is not None
            if st.pending.entries is not None:  # staged inline: nothing to read or drop
                try:
                    self._complete(st, token, st.pending.entries)
                finally:
                    self._seen = None
                return
            try:
                raw = self.state.get(st.pending.staging)
                if raw is None:
                    now_sv = self.state.get(self.state_key)
                    if now_sv is not None and now_sv.token == token:
                        raise LogCorrupted(f"staged entries of pending batch {st.pending.id} lost")
                    return  # committed (and cleaned) meanwhile; the re-read will show it
                self._complete(st, token, tiles.decode_bundle(raw.value))
                self._drop_staging(st.pending.staging)
            finally:
                self._seen = None
            return
        time.sleep(self.poll_interval * (1 + random.random()))  # noqa: S311 - jitter only

    def _complete(self, claimed: LogState, token: str, entries: Sequence[bytes]) -> int:
        """Write the tiles of the pending batch and commit it. Returns its start index.
        Idempotent: anyone may run it for the same pending batch."""
        p = claimed.pending
        assert p is not None and p.count == len(entries)
        leaf_hashes = [merkle.hash_leaf(e) for e in entries]
        objs = self._batch_objects(p.start, entries, leaf_hashes)
        # Independent write-once objects: write them in parallel (latency, not CPU, bound).
        for _ in self._pool.map(lambda pd: self._put_same(*pd), objs):
            pass
        cr = merkle.CompactRange(p.start, claimed.compact)
        cr.extend(leaf_hashes)
        done = LogState(claimed.origin, p.start + p.count, cr.root(), tuple(cr.hashes), None)
        try:
            committed = self.state.put(self.state_key, done.to_json(), if_match=token)
            self._raise_floor(done.size)
            with self._floor_lock:
                self._last = (done, committed)
        except PreconditionFailed:
            st, _ = self._load()
            if st.size < p.start + p.count or (st.pending is not None and st.pending.id == p.id):
                raise LogCorrupted(f"batch {p.id} neither committed nor pending") from None
        return p.start

    def _batch_objects(
        self, start: int, entries: Sequence[bytes], leaf_hashes: Sequence[bytes]
    ) -> list[tuple[str, bytes]]:
        """Entry bundles and hash tiles (full and partial) that the batch changes."""
        out: list[tuple[str, bytes]] = []
        end = start + len(entries)
        W = tiles.TILE_WIDTH
        for b in range(start // W, (end - 1) // W + 1):
            lo, hi = b * W, min(b * W + W, end)
            old = self._bundle(b, start - lo) if lo < start else []
            out.append(
                (
                    tiles.entries_path(b, hi - lo),
                    tiles.encode_bundle(old + list(entries[max(lo, start) - start : hi - start])),
                )
            )
        level, old_n, new_n, new_nodes = 0, start, end, list(leaf_hashes)
        while new_n > old_n:
            next_nodes: list[bytes] = []
            for t in range(old_n // W, (new_n - 1) // W + 1):
                lo, hi = t * W, min(t * W + W, new_n)
                old = self._tile(level, t, old_n - lo) if lo < old_n else []
                row = old + new_nodes[max(lo, old_n) - old_n : hi - old_n]
                out.append((tiles.tile_path(level, t, hi - lo), b"".join(row)))
                if hi - lo == W:
                    next_nodes.append(perfect_root(row))
            level, old_n, new_n, new_nodes = level + 1, old_n >> 8, new_n >> 8, next_nodes
        return out

    def _put_same(self, path: str, data: bytes) -> None:
        key = self.prefix + path
        try:
            # ``fresh``: a retry's or a helper's tile is refused by the conditional create
            # and compared below; the log never deletes, so no marker of ours is on it.
            res = self.objects.put(key, data, retention=self.retention_for_log(), fresh=True)
            self._versions[key] = res.version_id
        except ObjectExists:
            if self._read(key) != data:
                raise LogCorrupted(f"{key} exists with different bytes") from None
        self._cache.put(key, data)

    # ---------------------------------------------------------------- reads

    def _version_id(self, key: str) -> str:
        vid = self._versions.get(key)
        if vid is not None:
            return vid
        found = [
            v for v in self.objects.list_versions(key) if v.key == key and not v.is_delete_marker
        ]
        if not found:
            raise LogCorrupted(f"{key} is missing")
        # The first version written is the log's; later ones are findings for verify.
        found.sort(key=lambda v: (v.last_modified is None, v.last_modified))
        self._versions[key] = found[0].version_id
        return found[0].version_id

    def _read(self, key: str) -> bytes:
        data = self._cache.get(key)
        if data is None:
            try:
                data = self.objects.get(key, self._version_id(key))
            except ObjectNotFound as exc:
                raise LogCorrupted(f"{key} is missing") from exc
            self._cache.put(key, data)
        return data

    def _tile(self, level: int, index: int, width: int) -> list[bytes]:
        hashes = tiles.split_hashes(self._read(self.prefix + tiles.tile_path(level, index, width)))
        if len(hashes) != width:
            raise LogCorrupted(f"tile {level}/{index} has {len(hashes)} hashes, want {width}")
        return hashes

    def _bundle(self, index: int, width: int) -> list[bytes]:
        got = tiles.decode_bundle(self._read(self.prefix + tiles.entries_path(index, width)))
        if len(got) != width:
            raise LogCorrupted(f"entry bundle {index} has {len(got)} entries, want {width}")
        return got

    def _sizes(self, tree_size: int | None) -> tuple[int, int]:
        """(asked tree size, committed size). Tiles are always read at the committed size:
        a node or entry never changes once written, but only committed sizes have tiles."""
        latest = self.size()
        if tree_size is None:
            return latest, latest
        if not 0 <= tree_size <= latest:
            raise ProofError(f"tree size {tree_size} outside 0..{latest}")
        return tree_size, latest

    def entry(self, index: int, tree_size: int | None = None) -> bytes:
        size, latest = self._sizes(tree_size)
        if not 0 <= index < size:
            raise ProofError(f"index {index} outside tree of size {size}")
        b = index // tiles.TILE_WIDTH
        return self._bundle(b, tiles.entry_bundle_width(b, latest))[index % tiles.TILE_WIDTH]

    def entry_reader(self, tree_size: int | None = None) -> Callable[[int], bytes]:
        """``entry`` for many reads in one tree: the committed size is read once here, not
        once per entry (a report's lock sample reads thousands of scattered entries)."""
        size, latest = self._sizes(tree_size)

        def read(index: int) -> bytes:
            if not 0 <= index < size:
                raise ProofError(f"index {index} outside tree of size {size}")
            b = index // tiles.TILE_WIDTH
            return self._bundle(b, tiles.entry_bundle_width(b, latest))[index % tiles.TILE_WIDTH]

        return read

    def entries(self, start: int, end: int, tree_size: int | None = None) -> list[bytes]:
        """Entries ``[start, end)``, one bundle read per 256."""
        size, latest = self._sizes(tree_size)
        if not 0 <= start <= end <= size:
            raise ProofError(f"range [{start}, {end}) outside tree of size {size}")
        out: list[bytes] = []
        W = tiles.TILE_WIDTH
        for b in range(start // W, (end + W - 1) // W):
            bundle = self._bundle(b, tiles.entry_bundle_width(b, latest))
            out += bundle[max(start - b * W, 0) : end - b * W]
        return out

    def tile_hashes(self, level: int, index: int, tree_size: int | None = None) -> list[bytes]:
        """The hashes of tile ``(level, index)`` as of ``tree_size`` (read at the committed
        size, truncated)."""
        size, latest = self._sizes(tree_size)
        width = tiles.tile_width(level, index, size)
        if width == 0:
            return []
        return self._tile(level, index, tiles.tile_width(level, index, latest))[:width]

    def node(self, level: int, index: int, latest: int) -> bytes:
        """Hash of the perfect subtree ``(level, index)``, read from the tiles of the
        committed tree of size ``latest``."""
        if (index + 1) << level > latest:
            raise ProofError(f"node ({level}, {index}) not in a tree of size {latest}")
        tl, ti, first, count = tiles.node_location(level, index)
        row = self._tile(tl, ti, tiles.tile_width(tl, ti, latest))
        return perfect_root(row[first : first + count])

    def _source(self, latest: int) -> merkle.NodeSource:
        return lambda level, index: self.node(level, index, latest)

    def leaf_hash(self, index: int, tree_size: int | None = None) -> bytes:
        size, latest = self._sizes(tree_size)
        if not 0 <= index < size:
            raise ProofError(f"index {index} outside tree of size {size}")
        return self.node(0, index, latest)

    def root_at(self, tree_size: int) -> bytes:
        """Root of the first ``tree_size`` leaves, recomputed from the tiles."""
        size, latest = self._sizes(tree_size)
        return (
            merkle.EMPTY_ROOT if size == 0 else merkle.subtree_hash(0, size, self._source(latest))
        )

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        size, latest = self._sizes(tree_size)
        return merkle.inclusion_proof(index, size, self._source(latest))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        size, latest = self._sizes(new_size)
        return merkle.consistency_proof(old_size, size, self._source(latest))
