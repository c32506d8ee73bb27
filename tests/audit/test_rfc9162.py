"""RFC 9162 Merkle trees against the published vectors, explicit negatives and a naive model."""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.rfc9162 import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    consistency_proof_from_nodes,
    inclusion_proof,
    inclusion_proof_from_nodes,
    leaf_hash,
    node_hash,
    perfect_nodes_completed_by,
    root_from_hashes,
    root_from_nodes,
    verify_consistency,
    verify_inclusion,
)
from credcore.errors import VerificationError

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "shared" / "data" / "rfc9162-and-signed-note-vectors.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
HASHES = [bytes.fromhex(h) for h in VECTORS["leaf_hashes_hex"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["roots_by_size_hex"]]


def unhex(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in items]


# The RFC 9162 §2.1 definitions written out literally, as the model the fast code must match.
def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return node_hash(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def node_store(d: list[bytes]) -> Callable[[int, int], bytes]:
    """A get_node that refuses anything but a complete perfect subtree, as storage would."""

    def get_node(level: int, index: int) -> bytes:
        lo, hi = index << level, (index + 1) << level
        assert hi <= len(d), f"asked for incomplete node ({level}, {index})"
        return mth(d[lo:hi])

    return get_node


def random_hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.parametrize("i", range(len(LEAVES)))
def test_leaf_hash_vectors(i: int) -> None:
    """Each published leaf input hashes to its published leaf hash."""
    assert leaf_hash(LEAVES[i]) == HASHES[i]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_by_size(size: int) -> None:
    """The root of every prefix of the vector leaves matches, however it is computed."""
    assert root_from_hashes(HASHES[:size]) == ROOTS[size]
    assert root_from_nodes(size, node_store(HASHES)) == ROOTS[size]
    frontier = Frontier()
    for h in HASHES[:size]:
        frontier.append(h)
    assert frontier.root() == ROOTS[size]


def test_empty_tree_root_is_hash_of_nothing() -> None:
    """An empty tree's root is SHA-256 of the empty string."""
    assert root_from_hashes([]) == EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]


@pytest.mark.parametrize("v", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['index']}of{v['tree_size']}")
def test_inclusion_vectors(v: dict) -> None:
    """Published inclusion proofs are produced exactly and verify against the published root."""
    expected = unhex(v["hashes_hex"])
    index, size = v["index"], v["tree_size"]
    assert inclusion_proof(index, size, HASHES) == expected
    assert inclusion_proof_from_nodes(index, size, node_store(HASHES)) == expected
    verify_inclusion(HASHES[index], index, size, expected, ROOTS[size])


@pytest.mark.parametrize("v", VECTORS["consistency_proofs"], ids=lambda v: f"{v['first']}to{v['second']}")
def test_consistency_vectors(v: dict) -> None:
    """Published consistency proofs are produced exactly and verify between the two roots."""
    expected = unhex(v["hashes_hex"])
    first, second = v["first"], v["second"]
    assert consistency_proof(first, second, HASHES) == expected
    assert consistency_proof_from_nodes(first, second, node_store(HASHES)) == expected
    verify_consistency(first, second, ROOTS[first], ROOTS[second], expected)


def inclusion_cases() -> list[tuple[str, tuple]]:
    v = VECTORS["inclusion_proofs"][1]  # leaf 5 of 8
    i, n, p, root = v["index"], v["tree_size"], unhex(v["hashes_hex"]), ROOTS[8]
    return [
        ("wrong index", (HASHES[i], i - 1, n, p, root)),
        ("index past size", (HASHES[i], n, n, p, root)),
        ("wrong size", (HASHES[i], i, n - 2, p, root)),
        ("wrong root", (HASHES[i], i, n, p, ROOTS[7])),
        ("wrong leaf", (HASHES[i - 1], i, n, p, root)),
        ("truncated proof", (HASHES[i], i, n, p[:-1], root)),
        ("extended proof", (HASHES[i], i, n, [*p, p[0]], root)),
        ("flipped hash", (HASHES[i], i, n, [p[0][:-1] + b"\x00", *p[1:]], root)),
        ("short hash", (HASHES[i], i, n, [p[0][:31], *p[1:]], root)),
        ("empty proof", (HASHES[i], i, n, [], root)),
    ]


@pytest.mark.parametrize("args", [c[1] for c in inclusion_cases()], ids=[c[0] for c in inclusion_cases()])
def test_inclusion_negatives(args: tuple) -> None:
    """A proof checked against the wrong leaf, position, root or with a changed length fails."""
    with pytest.raises(VerificationError):
        verify_inclusion(*args)


def consistency_cases() -> list[tuple[str, tuple]]:
    v = VECTORS["consistency_proofs"][1]  # 6 to 8
    m, n, p = v["first"], v["second"], unhex(v["hashes_hex"])
    return [
        ("first > second", (n, m, ROOTS[n], ROOTS[m], p)),
        ("wrong first", (m - 1, n, ROOTS[m], ROOTS[n], p)),
        ("wrong second", (m, n + 4, ROOTS[m], ROOTS[n], p)),
        ("wrong first root", (m, n, ROOTS[m - 1], ROOTS[n], p)),
        ("wrong second root", (m, n, ROOTS[m], ROOTS[n - 1], p)),
        ("truncated proof", (m, n, ROOTS[m], ROOTS[n], p[:-1])),
        ("extended proof", (m, n, ROOTS[m], ROOTS[n], [*p, p[0]])),
        ("empty proof", (m, n, ROOTS[m], ROOTS[n], [])),
        ("same size, other root", (n, n, ROOTS[m], ROOTS[n], [])),
        ("same size, proof given", (n, n, ROOTS[n], ROOTS[n], p[:1])),
        ("size 0, proof given", (0, n, ROOTS[0], ROOTS[n], p[:1])),
        ("size 0, wrong root", (0, n, ROOTS[1], ROOTS[n], [])),
        ("negative size", (-1, n, ROOTS[0], ROOTS[n], [])),
    ]


@pytest.mark.parametrize("args", [c[1] for c in consistency_cases()], ids=[c[0] for c in consistency_cases()])
def test_consistency_negatives(args: tuple) -> None:
    """A consistency proof with wrong sizes, roots or length, or sizes out of order, fails."""
    with pytest.raises(VerificationError):
        verify_consistency(*args)


def test_trivial_consistency_needs_no_proof() -> None:
    """From the empty tree, or to the same size, the empty proof verifies."""
    verify_consistency(0, 8, ROOTS[0], ROOTS[8], [])
    verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert consistency_proof(0, 8, HASHES) == consistency_proof(5, 5, HASHES) == []


@pytest.mark.parametrize(("index", "size"), [(-1, 4), (4, 4), (0, 0), (8, 9)])
def test_inclusion_proof_refuses_impossible_positions(index: int, size: int) -> None:
    """Asking for a leaf outside the tree, or beyond the hashes given, is a ValueError."""
    with pytest.raises(ValueError):
        inclusion_proof(index, size, HASHES)


@pytest.mark.parametrize(("first", "second"), [(5, 4), (-1, 3), (3, 9)])
def test_consistency_proof_refuses_impossible_sizes(first: int, second: int) -> None:
    """A decreasing or negative size, or a size beyond the hashes given, is a ValueError."""
    with pytest.raises(ValueError):
        consistency_proof(first, second, HASHES)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_from_nodes_matches_rfc_definition(case: tuple[int, int]) -> None:
    """For random sizes, node-based inclusion proofs equal PATH(m, D[n]) and verify."""
    size, index = case
    d = random_hashes(size)
    proof = inclusion_proof_from_nodes(index, size, node_store(d))
    assert proof == path(index, d)
    verify_inclusion(d[index], index, size, proof, mth(d))
    if size > 1:
        with pytest.raises(VerificationError):
            verify_inclusion(d[index], (index + 1) % size, size, proof, mth(d))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_from_nodes_matches_rfc_definition(case: tuple[int, int]) -> None:
    """For random sizes, node-based consistency proofs equal SUBPROOF(m, D[n], true) and verify."""
    first, second = case
    d = random_hashes(second)
    proof = consistency_proof_from_nodes(first, second, node_store(d))
    assert proof == (subproof(first, d, True) if first < second else [])
    verify_consistency(first, second, mth(d[:first]), mth(d), proof)
    if first < second:
        with pytest.raises(VerificationError):
            verify_consistency(first, second, mth(d[: first - 1]), mth(d), proof)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300))
def test_frontier_and_nodes_match_rfc_root(size: int) -> None:
    """Frontier appends, its saved form, stored nodes and the list root all give MTH."""
    d = random_hashes(size)
    frontier, stored = Frontier(), dict[tuple[int, int], bytes]()
    for i, h in enumerate(d):
        completed = frontier.append(h)
        assert completed == perfect_nodes_completed_by(i, h, lambda lv, ix: stored[(lv, ix)])
        for level, index, value in completed:
            assert value == mth(d[index << level : (index + 1) << level])
            stored[(level, index)] = value
    assert frontier.size == size
    assert frontier.root() == root_from_hashes(d) == mth(d)
    assert root_from_nodes(size, lambda lv, ix: stored[(lv, ix)]) == mth(d)
    restored = Frontier.from_hashes(size, frontier.hashes)
    assert restored.root() == mth(d)
    assert Frontier.from_nodes(size, lambda lv, ix: stored[(lv, ix)]).hashes == frontier.hashes
    restored.append(HASHES[0])
    assert restored.root() == mth([*d, HASHES[0]])


def test_frontier_refuses_a_wrong_saved_form() -> None:
    """A saved frontier whose hash count does not fit its size is refused."""
    with pytest.raises(ValueError):
        Frontier.from_hashes(3, HASHES[:1])
    with pytest.raises(ValueError):
        Frontier.from_hashes(2, [b"short"])
