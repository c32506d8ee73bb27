"""The right edge of an RFC 9162 tree, as perfect subtrees: pure helpers for the writer.

A tree of `size` leaves is the left-to-right sequence of perfect subtrees given by the set bits
of `size` (largest first); its root is their right fold with the node hash. Appending leaf i
completes the perfect subtrees (level l, index (i+1)/2**l - 1) for every l with 2**l | (i+1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]  # (level, index): the subtree of leaves [index*2**level, (index+1)*2**level)


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def decomposition(size: int) -> list[NodeKey]:
    """The perfect subtrees that make up a tree of `size` leaves, left to right."""
    keys: list[NodeKey] = []
    offset = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, offset >> level))
            offset += 1 << level
    return keys


def root_of(size: int, get_node: Callable[[int, int], bytes]) -> bytes:
    """The Merkle tree hash of the first `size` leaves, from its perfect subtrees."""
    parts = [get_node(level, index) for level, index in decomposition(size)]
    if not parts:
        return EMPTY_ROOT
    root = parts[-1]
    for part in reversed(parts[:-1]):
        root = node_hash(part, root)
    return root


def completed_by(index: int, leaf: bytes, get_node: Callable[[int, int], bytes]) -> Iterator[tuple[int, int, bytes]]:
    """The (level >= 1) nodes completed by appending the leaf hash `leaf` at `index`."""
    current = leaf
    level, position = 0, index
    while position & 1:  # a right child: its left sibling is complete, so is their parent
        current = node_hash(get_node(level, position - 1), current)
        level, position = level + 1, position >> 1
        yield level, position, current
