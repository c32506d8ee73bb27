"""RFC 9162 Merkle trees: hashes, proofs and their verification, with no storage.

Leaf and node hashes follow RFC 9162 §2.1.1 (`SHA-256(0x00 || leaf)`,
`SHA-256(0x01 || left || right)`); proofs follow §2.1.3 (inclusion) and §2.1.4
(consistency). Indices and sizes are 0-based leaf counts, as in the RFC.

Proofs are built from *perfect nodes*: `get_node(level, index)` is the hash of the
complete subtree of `2**level` leaves starting at leaf `index * 2**level` (level 0 is
the leaf hash). Every subtree the RFC's recursion asks for is either such a node or a
right edge that is a short run of them, so a store that keeps perfect nodes as leaves
are appended answers any proof or root with O(log n) reads. `perfect_nodes_completed_by`
and `Frontier.append` list the nodes an append completes, so a writer can store them.

Generating functions raise `ValueError` for impossible arguments (a caller bug or a bad
request); verifying functions raise `VerificationError` and never return a bool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from credcore.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]
Node = tuple[int, int, bytes]  # (level, index, hash) of a perfect subtree

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of one leaf, domain-separated from nodes by 0x00."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: the hash of an interior node, prefixed 0x01."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) of a whole list of leaf hashes; SHA-256("") when empty.

    Pairing neighbours level by level and carrying an unpaired last node up unchanged
    builds the same left-balanced tree as the RFC's split at the largest power of two,
    without recursion, so it stays fast for a million leaves.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(lo: int, hi: int, get_node: NodeGetter) -> bytes:
    """MTH of leaves [lo, hi), for the aligned ranges that RFC 9162's recursion produces.

    The range is cut into perfect subtrees following the binary digits of its size,
    largest first, then folded right to left, which is how a left-balanced tree hangs.
    """
    pieces = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        pieces.append(get_node(level, lo >> level))
        lo += 1 << level
    root = pieces.pop()
    while pieces:
        root = node_hash(pieces.pop(), root)
    return root


def root_from_nodes(size: int, get_node: NodeGetter) -> bytes:
    """MTH of the first `size` leaves, from at most log2(size) + 1 perfect nodes."""
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    return _range_hash(0, size, get_node) if size else EMPTY_ROOT


def inclusion_proof_from_nodes(index: int, size: int, get_node: NodeGetter) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, walked from the root down.

    Only the first left turn's sibling is an imperfect right edge; every other sibling
    is one perfect node, so the proof costs O(log size) reads.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    proof = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            proof.append(_range_hash(lo + k, hi, get_node))
            hi = lo + k
        else:
            proof.append(_range_hash(lo, lo + k, get_node))
            lo += k
    proof.reverse()  # the RFC lists the deepest sibling first
    return proof


def consistency_proof_from_nodes(first: int, second: int, get_node: NodeGetter) -> list[bytes]:
    """PROOF(first, D[second]) = SUBPROOF(first, D[second], true) of RFC 9162 §2.1.4.1.

    An empty tree and an equal size need no proof, so both give an empty list.
    """
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    proof = []
    lo, hi, m, whole_old_tree = 0, second, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_range_hash(lo + k, hi, get_node))
            hi = lo + k
        else:
            proof.append(_range_hash(lo, lo + k, get_node))
            lo, m, whole_old_tree = lo + k, m - k, False
    if not whole_old_tree:  # SUBPROOF's b=false: this node is not the old root the verifier holds
        proof.append(_range_hash(lo, hi, get_node))
    proof.reverse()
    return proof


def perfect_nodes_completed_by(leaf_index: int, leaf_hash: bytes, get_node: NodeGetter) -> list[Node]:
    """The perfect nodes that appending leaf `leaf_index` completes: the leaf itself
    (level 0) and each ancestor whose last leaf it is, read siblings via `get_node`."""
    nodes = [(0, leaf_index, leaf_hash)]
    level, h = 0, leaf_hash
    while (leaf_index >> level) & 1:  # a set bit: this subtree is a right child
        h = node_hash(get_node(level, (leaf_index >> level) - 1), h)
        level += 1
        nodes.append((level, leaf_index >> level, h))
    return nodes


def _check_enough(size: int, leaf_hashes: Sequence[bytes]) -> None:
    if size > len(leaf_hashes):
        raise ValueError(f"a tree of size {size} needs more than {len(leaf_hashes)} leaf hashes")


def _list_getter(leaf_hashes: Sequence[bytes]) -> NodeGetter:
    def get_node(level: int, index: int) -> bytes:
        start = index << level
        end = start + (1 << level)
        return root_from_hashes(leaf_hashes[start:end])

    return get_node


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 inclusion proof computed from a list of leaf hashes."""
    _check_enough(size, leaf_hashes)
    return inclusion_proof_from_nodes(index, size, _list_getter(leaf_hashes))


def consistency_proof(first: int, second: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof computed from a list of leaf hashes."""
    _check_enough(second, leaf_hashes)
    return consistency_proof_from_nodes(first, second, _list_getter(leaf_hashes))


def _check_hashes(kind: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise VerificationError(f"{kind} hash {i} is {len(h)} bytes, not {HASH_SIZE}")


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that `leaf_hash` is leaf `index` of the tree `root`."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes("inclusion proof", proof)
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError(f"inclusion proof has {len(proof)} hashes: too many")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:  # skip levels where this node has no right sibling
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(f"inclusion proof has {len(proof)} hashes: too few")
    if r != root:
        raise VerificationError(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: check that tree `second_root` extends tree `first_root`."""
    if not 0 <= first <= second:
        raise VerificationError(f"tree size {first} cannot precede tree size {second}")
    _check_hashes("consistency proof", proof)
    if first in (0, second):
        if proof:
            raise VerificationError(f"consistency proof from size {first} must be empty")
        if first == 0 and first_root != EMPTY_ROOT:
            raise VerificationError("the root given for size 0 is not the empty-tree hash")
        if first == second and first_root != second_root:
            raise VerificationError(f"two different roots are given for tree size {first}")
        return
    if not proof:
        raise VerificationError(f"consistency proof from {first} to {second} is empty")
    path = list(proof)
    if first & (first - 1) == 0:  # the old tree is one perfect node: its root starts the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(f"consistency proof has {len(proof)} hashes: too many")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(f"consistency proof has {len(proof)} hashes: too few")
    if fr != first_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {first}")
    if sr != second_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {second}")


class Frontier:
    """The compact range [0, size): one perfect-node hash per set bit of `size`.

    `hashes` runs left to right, so from the highest level down; `(size, hashes)` is
    all a writer persists to keep appending and computing roots after a restart.
    """

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Rebuild from `size` and `hashes` as given by `.size` and `.hashes`."""
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a frontier of size {size} has {max(size, 0).bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes")
        frontier = cls()
        frontier._size, frontier._hashes = size, list(hashes)
        return frontier

    @classmethod
    def from_nodes(cls, size: int, get_node: NodeGetter) -> Frontier:
        """Rebuild from stored perfect nodes (one read per set bit of `size`)."""
        hashes, lo = [], 0
        for level in reversed(range(size.bit_length())):
            if size >> level & 1:
                hashes.append(get_node(level, lo >> level))
                lo += 1 << level
        return cls.from_hashes(size, hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        return list(self._hashes)

    def append(self, leaf_hash: bytes) -> list[Node]:
        """Add one leaf; return the perfect nodes it completes (as `perfect_nodes_completed_by`)."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        nodes = [(0, index, leaf_hash)]
        level, h = 0, leaf_hash
        while (index >> level) & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            nodes.append((level, index >> level, h))
        self._hashes.append(h)
        self._size += 1
        return nodes

    def root(self) -> bytes:
        """MTH of the leaves appended so far (RFC 9162 §2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            root = node_hash(h, root)
        return root
