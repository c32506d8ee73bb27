"""Checking a stored log chunk by chunk, so that chunks can be checked in parallel (pure).

A chunk is the aligned range [lo, hi) of a log, with lo a multiple of the chunk size (a power
of two). `check_chunk` gets the stored rows `(index, leaf or None, stored leaf hash)` of
[lo - 2, hi + 1): the two rows before it and the one after it are context only, so the link
from the chunk's first entry to the entry before it is checked inside the chunk, and damage
at a chunk edge is named as precisely as anywhere else. It reports the FIRST bad index of the
chunk and the kind of damage, and the Merkle pieces the caller needs: the root of the whole
chunk (a perfect subtree) and, for each checkpoint size inside the chunk, the perfect
subtrees that cover [lo, size). `LogMerger` folds chunk reports in index order into the roots
of every checkpoint size, so one pass over the log checks every checkpoint ever signed.

Rules of a stored entry (CONTRACTS.md section 4 and the retention rules of audit/retention.py):
- its leaf is the RFC 8785 form of an object whose `prev_hash` is the leaf hash of the entry
  before it (64 zeros for entry 0);
- a pruned entry (leaf null) keeps its leaf hash: the hash is trusted for pruned entries only,
  and the next entry's `prev_hash` must name it, so the chain still links across it;
- every pruned index must be below the `up_to` of a retention event in the log.

Damage is named by what the neighbours show: a row missing from the index sequence was
deleted; a leaf whose hash differs from the hash stored beside it was edited; an entry whose
`prev_hash` names the entry two before it follows an inserted one; one that names the entry
after it was reordered.

`check_chunk` is the reference. `check_chunk_fast` gives the same report for the rows a database
hands back as they are: it only proves a chunk intact (about 7 µs an entry instead of 12) and hands
anything else, damage or unusual values, to `check_chunk`, so damage is always named by one code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from audit.chain import GENESIS_PREV, decode_entry, is_plain
from audit.rfc9162 import HASH_SIZE, node_hash
from credcore.errors import VerificationError

PRUNE_KIND = "retention_prune"
Row = tuple[int, "bytes | None", "bytes | None"]  # (index, leaf or None if pruned, stored leaf hash)
_sha256 = hashlib.sha256
# Hash objects already fed the RFC 9162 prefix: copying one costs less than prefixing a 1 kB leaf.
_LEAF_PREFIXED = hashlib.sha256(b"\x00")
_NODE_PREFIXED = hashlib.sha256(b"\x01")
# audit/chain.py's fast path: orjson, sorted keys, integers within 2**53 (decode_entry explains why).
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_BELOW_4_BYTE_UTF8 = bytes(range(0xF0))  # deleting these leaves the lead bytes of characters outside the BMP


@dataclass
class ChunkReport:
    """What `check_chunk` found in [lo, hi); `hi` stops early at the first error or missing row."""

    lo: int
    hi: int
    last_hash: str  # hex leaf hash of entry hi-1 (what entry hi must name)
    error: tuple[int, str] | None = None
    root: bytes | None = None  # MTH of [lo, hi) when the chunk is complete
    pieces: dict[int, list[bytes]] = field(default_factory=dict)  # size -> perfect subtrees of [lo, size)
    pruned: list[tuple[int, int]] = field(default_factory=list)  # ranges [a, b) of pruned entries
    prune_bound: int = 0  # the largest `up_to` of a retention event in the chunk
    leaf_hashes: list[bytes] | None = None  # kept only when asked (bundles, small logs)


def as_bytes(value: object) -> bytes | None:
    """A stored value as bytes: someone editing the database may have left text (or a number) in
    a BLOB column; it is checked as the bytes it holds, and fails as an edit if it is wrong."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def _hash_of(row: Row) -> bytes:
    _, leaf, stored = row
    return _sha256(b"\x00" + leaf).digest() if leaf is not None else (stored or b"")


def _decoded(row: Row | None) -> dict[str, Any] | None:
    if row is None or row[1] is None:
        return None
    try:
        return decode_entry(row[1])
    except VerificationError:
        return None


def _link_damage(i: int, claim: object, at: dict[int, Row]) -> tuple[int, str]:
    """Name the damage when entry i's prev_hash is not the leaf hash of entry i-1."""
    if claim is None:
        return i, f"entry {i}: missing prev_hash: the entry was edited"
    expected = _hash_of(at[i - 1]).hex() if i > 0 else GENESIS_PREV
    if i >= 2 and (i - 2) in at and claim == _hash_of(at[i - 2]).hex():
        return i - 1, (f"entry {i - 1}: inserted: entry {i} names entry {i - 2} as the one before it, "
                       f"so entry {i - 1} was put into the chain afterwards")
    if (i + 1) in at and claim == _hash_of(at[i + 1]).hex():
        return i, f"entry {i}: reordered: its prev_hash names entry {i + 1}, which comes after it"
    following = _decoded(at.get(i + 1))
    if i > 0 and following is not None and following.get("prev_hash") == expected:
        return i, f"entry {i}: inserted: entry {i + 1} names entry {i - 1} as the one before it"
    if i == 0:
        return 0, f"entry 0: prev_hash mismatch: {str(claim)[:64]!r} is not the genesis value (64 zeros)"
    return i, (
        f"entry {i}: prev_hash mismatch: {str(claim)[:64]!r} is not the leaf hash of entry {i - 1} "
        f"({expected}): an entry was deleted just before {i}, or entry {i - 1} was edited "
        "(with its stored hash), or entries were reordered or inserted there"
    )


def check_chunk(rows: Sequence[Row], lo: int, hi: int, sizes: Sequence[int] = (),
                keep_hashes: bool = False, end: int | None = None) -> ChunkReport:
    """Check entries [lo, hi) given the stored rows of [lo-2, hi+1) in index order; `end` is the
    size of the whole log when known (a missing row at the end is a truncation)."""
    hashes: list[bytes] = []
    report = ChunkReport(lo, lo, GENESIS_PREV if lo == 0 else "")
    pos = 0
    while pos < len(rows) and rows[pos][0] < lo:
        pos += 1
    if lo > 0:
        before = rows[pos - 1] if pos and rows[pos - 1][0] == lo - 1 else None
        report.last_hash = _hash_of(before).hex() if before is not None else ""
    expected = report.last_hash
    pruned_from: int | None = None
    sha256 = _sha256
    for i in range(lo, hi):
        row = rows[pos] if pos < len(rows) else None
        if row is None or row[0] != i:
            later = [r[0] for r in rows if r[0] > i]
            if later:
                report.error = (i, f"entry {i}: missing: the row was deleted (the next stored index is {later[0]})")
            elif end is None or hi >= end:
                report.error = (i, f"entry {i}: missing: the log was truncated here (no later row is stored)")
            else:
                report.error = (i, f"entry {i}: missing: the rows from {i} to at least {hi} were deleted")
            break
        pos += 1
        _, leaf, stored = row
        if leaf is None:
            if stored is None or len(stored) != HASH_SIZE:
                report.error = (i, f"entry {i}: pruned, and its stored leaf hash is missing or malformed")
                break
            digest = stored
            if pruned_from is None:
                pruned_from = i
        else:
            if pruned_from is not None:
                report.pruned.append((pruned_from, i))
                pruned_from = None
            try:
                entry = decode_entry(leaf)
            except VerificationError as exc:
                report.error = (i, f"entry {i}: edited: {exc.description}")
                break
            digest = sha256(b"\x00" + leaf).digest()
            if stored is not None and stored != digest:
                report.error = (i, f"entry {i}: edited: the leaf no longer matches the leaf hash stored when it was "
                                   "appended")
                break
            claim = entry.get("prev_hash")
            if claim != expected and expected != "":
                report.error = _link_damage(i, claim, {r[0]: r for r in rows})
                break
            if entry.get("kind") == PRUNE_KIND and type(entry.get("up_to")) is int:
                report.prune_bound = max(report.prune_bound, entry["up_to"])
        hashes.append(digest)
        expected = digest.hex()
    if pruned_from is not None:
        report.pruned.append((pruned_from, lo + len(hashes)))
    return _finish(report, hashes, sizes, keep_hashes)


def _finish(report: ChunkReport, hashes: list[bytes], sizes: Sequence[int], keep_hashes: bool) -> ChunkReport:
    """Fill in the end of the checked run and its Merkle pieces, given its leaf hashes."""
    lo = report.lo
    report.hi = lo + len(hashes)
    if hashes:
        report.last_hash = hashes[-1].hex()
    levels = _levels(hashes)
    report.pieces = {s: _pieces(levels, s - lo) for s in sizes if lo < s <= report.hi}
    n = len(hashes)
    if n and n & (n - 1) == 0:
        report.root = levels[-1][0]
    if keep_hashes:
        report.leaf_hashes = hashes
    return report


def check_chunk_fast(rows: Sequence[Sequence[Any]], lo: int, hi: int, sizes: Sequence[int] = (),
                     keep_hashes: bool = False, end: int | None = None) -> ChunkReport:
    """`check_chunk`'s report for rows as a database returns them (a leaf may be text or a
    memoryview if someone edited the table): cheap when the chunk is intact, and the reference
    itself, over the same rows, at the first thing that is not plainly intact."""
    run = _intact_run(rows, lo, hi)
    if run is None:
        return check_chunk([normal_row(r) for r in rows], lo, hi, sizes, keep_hashes, end)
    hashes, pruned, prune_bound = run
    report = ChunkReport(lo, lo, "", pruned=pruned, prune_bound=prune_bound)
    return _finish(report, hashes, sizes, keep_hashes)


def normal_row(row: Sequence[Any]) -> Row:
    index, leaf, stored = row
    return int(index), as_bytes(leaf), as_bytes(stored)


def _exact_entry(leaf: bytes) -> dict[str, Any] | None:
    try:
        return decode_entry(leaf)
    except VerificationError:
        return None


def _hash_before(rows: Sequence[Sequence[Any]], pos: int, lo: int) -> str | None:
    """The hex leaf hash entry `lo` must name, from the row before it at `pos - 1`; None if odd."""
    if lo == 0:
        return GENESIS_PREV
    if pos < 1:
        return None
    index, leaf, stored = rows[pos - 1]
    if index != lo - 1:
        return None
    if type(leaf) is bytes:
        return _sha256(b"\x00" + leaf).hexdigest()
    if leaf is None and type(stored) is bytes and len(stored) == HASH_SIZE:
        return stored.hex()
    return None


def _intact_run(rows: Sequence[Sequence[Any]], lo: int, hi: int
                ) -> tuple[list[bytes], list[tuple[int, int]], int] | None:
    """(leaf hashes, pruned ranges, largest retention `up_to`) of [lo, hi) when every row is
    there, in order, canonical, hashed as stored and linked to the one before; else None.

    The leaf is proved canonical as `decode_entry` does it (orjson's sorted re-encoding gives the
    same bytes, no float, nothing outside the BMP), inline: this loop is the verifier's cost."""
    pos = lo - rows[0][0] if rows and type(rows[0][0]) is int else -1
    if hi <= lo or not 0 <= pos < len(rows) or len(rows) < pos + hi - lo or rows[pos][0] != lo:
        return None
    expected = _hash_before(rows, pos, lo)
    if expected is None:
        return None
    prefixed, loads, dumps, canonical, plain = _LEAF_PREFIXED, orjson.loads, orjson.dumps, _CANONICAL, is_plain
    hashes: list[bytes] = []
    append = hashes.append
    pruned: list[tuple[int, int]] = []
    pruned_from: int | None = None
    bound = 0
    i = lo
    for index, leaf, stored in islice(rows, pos, pos + hi - lo):
        if index != i:
            return None  # rows come sorted by a unique index: a gap or a stranger
        if type(leaf) is bytes:
            hashing = prefixed.copy()
            hashing.update(leaf)
            digest = hashing.digest()
            if digest != stored and stored is not None:
                return None
            entry: Any = None
            if leaf.isascii() or not leaf.translate(None, _BELOW_4_BYTE_UTF8):
                try:
                    entry = loads(leaf)
                    if type(entry) is not dict or dumps(entry, option=canonical) != leaf or not plain(entry):
                        entry = None
                except (ValueError, TypeError, RecursionError):  # orjson's errors derive from these
                    entry = None
            if entry is None and (entry := _exact_entry(leaf)) is None:
                return None
            if entry.get("prev_hash") != expected:
                return None
            if entry.get("kind") == PRUNE_KIND and type(entry.get("up_to")) is int:
                bound = max(bound, entry["up_to"])
            if pruned_from is not None:
                pruned.append((pruned_from, i))
                pruned_from = None
        elif leaf is None and type(stored) is bytes and len(stored) == HASH_SIZE:
            digest = stored
            if pruned_from is None:
                pruned_from = i
        else:
            return None
        append(digest)
        expected = digest.hex()
        i += 1
    if pruned_from is not None:
        pruned.append((pruned_from, hi))
    return hashes, pruned, bound


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    """Every complete perfect node over `hashes`, level by level (level 0: the hashes)."""
    levels = [hashes]
    level = hashes
    while len(level) > 1:
        level = _parents(level)
        levels.append(level)
    return levels


def _parents(level: list[bytes]) -> list[bytes]:
    """The node over each pair of `level`, left to right (an odd last one has no parent yet)."""
    out: list[bytes] = []
    append, prefixed = out.append, _NODE_PREFIXED
    for i in range(0, len(level) - 1, 2):
        hashing = prefixed.copy()
        hashing.update(level[i] + level[i + 1])
        append(hashing.digest())
    return out


def _pieces(levels: list[list[bytes]], count: int) -> list[bytes]:
    """The perfect subtrees covering the first `count` leaves, largest first."""
    out, pos = [], 0
    for level in reversed(range(count.bit_length())):
        if count >> level & 1:
            out.append(levels[level][pos >> level])
            pos += 1 << level
    return out


def fold(pieces: Sequence[bytes]) -> bytes:
    """The root of a tree given its perfect subtrees left to right (as Frontier.root)."""
    root = pieces[-1]
    for piece in reversed(pieces[:-1]):
        root = node_hash(piece, root)
    return root


class LogMerger:
    """Folds chunk reports, in index order, into the roots at every requested size."""

    def __init__(self, chunk_size: int) -> None:
        if chunk_size <= 0 or chunk_size & (chunk_size - 1):
            raise ValueError("the chunk size must be a power of two")
        self.chunk_size = chunk_size
        self.size = 0
        self.last_hash = GENESIS_PREV
        self.roots: dict[int, bytes] = {}
        self.pruned: list[tuple[int, int]] = []
        self.prune_bound = 0
        self._stack: list[tuple[int, bytes]] = []  # perfect subtrees covering [0, size), left to right

    def add(self, report: ChunkReport) -> None:
        if report.lo != self.size:
            raise ValueError(f"chunk at {report.lo} does not follow size {self.size}")
        left = [h for _, h in self._stack]
        for s, pieces in report.pieces.items():
            self.roots[s] = fold(left + pieces)
        self.pruned += report.pruned
        self.prune_bound = max(self.prune_bound, report.prune_bound)
        if report.hi > report.lo:
            self.last_hash = report.last_hash
        self.size = report.hi
        if report.root is not None and report.hi - report.lo == self.chunk_size:
            level = self.chunk_size.bit_length() - 1
            node = report.root
            while self._stack and self._stack[-1][0] == level:
                node = node_hash(self._stack.pop()[1], node)
                level += 1
            self._stack.append((level, node))
        elif report.hi > report.lo:
            # A short (last) chunk: its own pieces close the tree; no chunk may follow it.
            full = report.pieces.get(report.hi)
            if full is not None:
                self._stack += [(-1, h) for h in full]

    def root(self) -> bytes | None:
        """MTH of the whole log merged so far (None if the last chunk did not ask for its size)."""
        if not self._stack:
            return hashlib.sha256(b"").digest() if self.size == 0 else None
        return fold([h for _, h in self._stack])

    def first_unexplained_prune(self) -> int | None:
        """The first pruned index no retention event covers, or None."""
        for a, b in self.pruned:
            if b > self.prune_bound:
                return max(a, self.prune_bound)
        return None


def chunk_ranges(size: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + chunk_size, size)) for lo in range(0, size, chunk_size)]


def sizes_in(sizes: Sequence[int], lo: int, hi: int) -> list[int]:
    return [s for s in sizes if lo < s <= hi]


def report_error(error: tuple[int, str]) -> VerificationError:
    index, message = error
    return VerificationError(message, index=index)
