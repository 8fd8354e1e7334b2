"""RFC 6962 hashing and proofs against the transparency-dev/merkle vectors, plus
property tests against a direct recursive reference of the RFC definitions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.ledger import merkle
from archiver.ledger.errors import ProofError

DATA = Path(__file__).resolve().parents[2] / "data" / "rfc6962"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


TREE = load("tree.json")
LEAVES = [bytes.fromhex(x) for x in TREE["leaf_inputs"]]
LEAF_HASHES = [merkle.hash_leaf(x) for x in LEAVES]


def ref_root(hs: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1 (recursive)."""
    if not hs:
        return merkle.EMPTY_ROOT
    if len(hs) == 1:
        return hs[0]
    k = 1 << ((len(hs) - 1).bit_length() - 1)
    return merkle.hash_children(ref_root(hs[:k]), ref_root(hs[k:]))


def test_vectors_name_their_source() -> None:
    for f in DATA.glob("*.json"):
        assert "source" in json.loads(f.read_text()), f


def test_roots_for_every_size() -> None:
    for n, want in enumerate(TREE["root_hashes_by_size"]):
        assert merkle.root_from_leaf_hashes(LEAF_HASHES[:n]).hex() == want
        assert ref_root(LEAF_HASHES[:n]).hex() == want


def test_node_hashes() -> None:
    tree = merkle.MemoryTree(LEAF_HASHES)
    for level, row in enumerate(TREE["node_hashes"]):
        for i, want in enumerate(row):
            assert tree.node(level, i).hex() == want


@pytest.mark.parametrize(
    "case", load("inclusion.json")["inclusion"], ids=lambda c: f"{c['index']}:{c['size']}"
)
def test_inclusion_vectors(case: dict) -> None:
    tree = merkle.MemoryTree(LEAF_HASHES)
    proof = tree.inclusion_proof(case["index"], case["size"])
    assert [p.hex() for p in proof] == case["proof"]
    root = bytes.fromhex(TREE["root_hashes_by_size"][case["size"]])
    merkle.verify_inclusion(case["index"], case["size"], LEAF_HASHES[case["index"]], proof, root)


@pytest.mark.parametrize(
    "case", load("consistency.json")["consistency"], ids=lambda c: f"{c['size1']}:{c['size2']}"
)
def test_consistency_vectors(case: dict) -> None:
    tree = merkle.MemoryTree(LEAF_HASHES)
    proof = tree.consistency_proof(case["size1"], case["size2"])
    assert [p.hex() for p in proof] == case["proof"]
    roots = TREE["root_hashes_by_size"]
    merkle.verify_consistency(
        case["size1"],
        case["size2"],
        bytes.fromhex(roots[case["size1"]]),
        bytes.fromhex(roots[case["size2"]]),
        proof,
    )


def test_all_pairs_small_tree() -> None:
    tree = merkle.MemoryTree(LEAF_HASHES)
    roots = [bytes.fromhex(r) for r in TREE["root_hashes_by_size"]]
    for n in range(1, 9):
        for i in range(n):
            merkle.verify_inclusion(i, n, LEAF_HASHES[i], tree.inclusion_proof(i, n), roots[n])
        for m in range(0, n + 1):
            merkle.verify_consistency(m, n, roots[m], roots[n], tree.consistency_proof(m, n))


def test_compact_range_reports_nodes_and_restarts() -> None:
    seen: list[tuple[int, int]] = []
    cr = merkle.CompactRange(on_node=lambda lv, i, h: seen.append((lv, i)))
    cr.extend(LEAF_HASHES[:5])
    assert cr.size == 5 and len(cr.hashes) == 2
    assert (2, 0) in seen and (0, 4) in seen
    again = merkle.CompactRange(cr.size, cr.hashes)
    again.extend(LEAF_HASHES[5:])
    assert again.root().hex() == TREE["root_hashes_by_size"][8]
    with pytest.raises(ProofError):
        merkle.CompactRange(3, [LEAF_HASHES[0]])


def test_verifiers_reject_tampering() -> None:
    tree = merkle.MemoryTree(LEAF_HASHES)
    root = tree.root()
    proof = tree.inclusion_proof(5)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(5, 8, LEAF_HASHES[4], proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(5, 8, LEAF_HASHES[5], proof[:-1], root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(5, 8, LEAF_HASHES[5], [*proof, proof[0]], root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(8, 8, LEAF_HASHES[5], proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(5, 8, LEAF_HASHES[5], proof, b"\x00" * 32)
    cons = tree.consistency_proof(3, 8)
    r3 = tree.root(3)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 8, r3, root, cons[:-1])
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 8, tree.root(4), root, cons)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 8, r3, tree.root(7), cons)
    with pytest.raises(ProofError):
        merkle.verify_consistency(8, 3, root, r3, cons)
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 8, r3, root, [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(8, 8, root, r3, [])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(0, 1, b"short", [], root)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_proof_round_trip_property(n: int, data: st.DataObject) -> None:
    hashes = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    tree = merkle.MemoryTree(hashes)
    assert tree.root() == ref_root(hashes)
    i = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(i + 1, n))
    root = ref_root(hashes[:size])
    merkle.verify_inclusion(i, size, hashes[i], tree.inclusion_proof(i, size), root)
    m = data.draw(st.integers(0, size))
    merkle.verify_consistency(m, size, ref_root(hashes[:m]), root, tree.consistency_proof(m, size))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_flipped_proof_byte_fails_property(n: int, data: st.DataObject) -> None:
    hashes = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    tree = merkle.MemoryTree(hashes)
    i = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(i)
    if not proof:
        return
    j = data.draw(st.integers(0, len(proof) - 1))
    bad = list(proof)
    bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(i, n, hashes[i], bad, tree.root())


def test_compact_range_is_fast_enough() -> None:
    """Brief target is 100,000 leaves/s; this only guards against a gross regression."""
    import time

    hashes = [merkle.hash_leaf(i.to_bytes(8, "big")) for i in range(50_000)]
    t = time.perf_counter()
    cr = merkle.CompactRange()
    cr.extend(hashes)
    assert time.perf_counter() - t < 2.0
    assert cr.root() == merkle.root_from_leaf_hashes(hashes)
