"""RFC 6962 Merkle tree hashing, proofs and their verification (pure, no I/O).

Hashing (RFC 6962 §2.1): ``leaf = SHA-256(0x00 ‖ data)``, ``node = SHA-256(0x01 ‖ l ‖ r)``,
the empty tree hashes to ``SHA-256("")``.

Proofs are *generated* from a :class:`NodeSource` (any function returning the hash of a
perfect subtree ``(level, index)``: the tiles of a stored log, or an in-memory list) and
*verified* from bytes only, the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms, raising
:class:`ProofError` on any mismatch (the shape of sigstore-python's ``_internal/merkle.py``).

:class:`CompactRange` is the incremental builder: it keeps the right edge of the tree (one
hash per set bit of the size), so integrating a leaf costs amortised two SHA-256 calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from archiver.ledger.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

# NodeSource(level, index) -> hash of the perfect subtree over leaves
# [index * 2**level, (index + 1) * 2**level).
NodeSource = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def hash_leaf(data: bytes) -> bytes:
    """RFC 6962 §2.1 leaf hash."""
    return _sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1 interior node hash."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2), RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the given leaf hashes (RFC 6962 §2.1)."""
    cr = CompactRange()
    cr.extend(leaf_hashes)
    return cr.root()


class CompactRange:
    """Right edge of a tree of ``size`` leaves: the roots of its perfect subtrees,
    largest first (one per set bit of ``size``). ``on_node(level, index, hash)`` is called
    for every perfect subtree completed, level 0 included, which is how tiles are filled.
    """

    __slots__ = ("_hashes", "_on_node", "size")

    def __init__(
        self,
        size: int = 0,
        hashes: Sequence[bytes] = (),
        on_node: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        if len(hashes) != size.bit_count():
            raise ProofError(f"compact range of size {size} needs {size.bit_count()} hashes")
        self.size = size
        self._hashes = list(hashes)
        self._on_node = on_node

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Integrate one leaf hash."""
        hashes = self._hashes
        size = self.size
        on_node = self._on_node
        h = leaf_hash
        if on_node is not None:
            on_node(0, size, h)
        level = 0
        # Each trailing 1-bit of the old size is a perfect subtree that now merges.
        while size & 1:
            h = _sha256(NODE_PREFIX + hashes.pop() + h).digest()
            size >>= 1
            level += 1
            if on_node is not None:
                on_node(level, size, h)
        hashes.append(h)
        self.size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Integrate many leaf hashes (the hot loop is inlined for speed)."""
        if self._on_node is not None:
            for lh in leaf_hashes:
                self.append(lh)
            return
        hashes = self._hashes
        n = self.size
        pop = hashes.pop
        push = hashes.append
        for h in leaf_hashes:
            s = n
            while s & 1:
                h = _sha256(NODE_PREFIX + pop() + h).digest()
                s >>= 1
            push(h)
            n += 1
        self.size = n

    def root(self) -> bytes:
        """MTH of the ``size`` leaves integrated so far."""
        if not self._hashes:
            return EMPTY_ROOT
        it = reversed(self._hashes)
        h = next(it)
        for left in it:
            h = hash_children(left, h)
        return h


def subtree_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH(D[start:end]) where ``start`` is aligned to the subtree (as in every RFC 6962
    recursion step); the range is split into perfect subtrees, largest first."""
    if end <= start:
        raise ProofError(f"empty range [{start}, {end})")
    parts: list[bytes] = []
    pos = start
    while pos < end:
        # Largest aligned perfect subtree starting at pos that fits in [pos, end).
        level = (end - pos).bit_length() - 1
        if pos:
            level = min(level, (pos & -pos).bit_length() - 1)
        parts.append(node(level, pos >> level))
        pos += 1 << level
    h = parts.pop()
    while parts:
        h = hash_children(parts.pop(), h)
    return h


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path PATH(index, D[size]), leaf-most hash first."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} outside tree of size {size}")
    path: list[bytes] = []
    lo, hi, m = 0, size, index
    # Walk down from the root; collect siblings, then reverse (RFC order is bottom-up).
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(subtree_hash(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k, node))
            lo += k
            m -= k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, node: NodeSource) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), bottom-up order."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} to {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree_hash(lo, hi, node))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_hash(lo + k, hi, node))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k, node))
            lo += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def _check_hash(h: bytes, what: str) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} has {len(h)} bytes, want {HASH_SIZE}")


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2: the root implied by an audit path. Raises ProofError."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} outside tree of size {size}")
    _check_hash(leaf_hash, "leaf hash")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows leaf ``index`` is in the tree ``root``."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf_hash, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not reach the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless tree ``new_root`` extends ``old_root``."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for p in proof:
        _check_hash(p, "proof hash")
    if not 0 <= old_size <= new_size:
        raise ProofError(f"old size {old_size} > new size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not reach the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not reach the new root")


class MemoryTree:
    """An in-memory tree (all levels kept) for tests, tools and small logs."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._cr = CompactRange(on_node=self._keep)
        self._cr.extend(leaf_hashes)

    def _keep(self, level: int, index: int, h: bytes) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        row = self._levels[level]
        if index != len(row):
            raise ProofError("nodes must arrive in order")
        row.append(h)

    @property
    def size(self) -> int:
        return self._cr.size

    def append(self, leaf_hash: bytes) -> None:
        self._cr.append(leaf_hash)

    def node(self, level: int, index: int) -> bytes:
        try:
            return self._levels[level][index]
        except IndexError:
            raise ProofError(f"no node ({level}, {index})") from None

    def root(self, size: int | None = None) -> bytes:
        s = self.size if size is None else size
        if s > self.size:
            raise ProofError(f"tree has only {self.size} leaves")
        return EMPTY_ROOT if s == 0 else subtree_hash(0, s, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.node)
