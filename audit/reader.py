"""Reading the audit log: entries, checkpoints, proofs and search (I/O over the audit tables).

Proofs are computed from stored perfect-subtree hashes: the proof functions are run once with
a recording lookup to learn which nodes they need, the nodes are fetched, and the functions run
again on them (O(log n) nodes, never a rebuild). Perfect nodes never change once written, so a
level with up to DENSE_NODES nodes is read once, in index order, and kept whole in memory (32
bytes a node: 64 MB for a million entries); deeper levels of bigger logs go through an LRU and
one query per proof. The log size is re-read only when a request asks beyond it.

Search uses only indexes kept at append time: by company through audit_subjects (uscc, ts_us,
idx), by released record through audit_records (sha256 / record_id), by operator through
(client_id, ts_us, idx); hits come oldest first (by time, then index) and the cursor is the
(time, index) of the last hit returned.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Select, func, literal, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit import tables
from audit.logcheck import as_bytes
from audit.rfc9162 import consistency_proof_from_nodes, inclusion_proof_from_nodes
from audit.writer import NodeKey, needed_nodes
from credcore.db import reading
from credcore.errors import AuditUnavailable, InvalidParameter, NotFound

MAX_ENTRIES = 1000
SEARCH_PAGE = 100
MAX_SEARCH_PAGE = 1000
NODE_CACHE = 200_000
DENSE_NODES = 1 << 21  # a level with at most this many nodes is kept whole in memory (64 MiB at most)
DENSE_CHUNK = 100_000


@dataclass(frozen=True)
class SearchQuery:
    operator: str | None = None
    uscc: str | None = None
    decision: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    record_sha256: str | None = None
    record_id: str | None = None
    after: tuple[int, int] | None = None  # (time in µs, index) of the last hit of the previous page
    limit: int = SEARCH_PAGE


def _us(when: dt.datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def format_cursor(ts_us: int, index: int) -> str:
    return f"{ts_us}.{index}"


def search_statement(q: SearchQuery) -> Select[Any]:
    """The SELECT for a search, oldest first (by entry time, then index), walking the index of the
    most selective filter: the company ((uscc, ts_us, idx) of audit_subjects), else the operator
    ((client_id, ts_us, idx)), else time alone ((ts_us, idx)); a released-record filter is a small
    IN list from audit_records. Every range is a seek, never a scan of the log."""
    e, s, r = tables.entries, tables.subjects, tables.records
    if q.uscc is not None:
        ts, idx = s.c.ts_us, s.c.idx
        query = select(e.c.idx, e.c.ts_us, e.c.leaf).select_from(s.join(e, e.c.idx == s.c.idx))
        query = query.where(s.c.uscc == q.uscc)
    else:
        ts, idx = e.c.ts_us, e.c.idx
        query = select(e.c.idx, e.c.ts_us, e.c.leaf)
    if q.record_sha256 is not None or q.record_id is not None:
        released = select(r.c.idx)
        if q.record_sha256 is not None:
            released = released.where(r.c.sha256 == q.record_sha256)
        if q.record_id is not None:
            released = released.where(r.c.record_id == q.record_id)
        query = query.where(e.c.idx.in_(released))
    if q.after is not None:
        query = query.where(tuple_(ts, idx) > tuple_(literal(q.after[0]), literal(q.after[1])))
    if q.operator is not None:
        query = query.where(e.c.client_id == q.operator)
    if q.decision is not None:
        query = query.where(e.c.decision == q.decision)
    if q.since is not None:
        query = query.where(ts >= _us(q.since))
    if q.until is not None:
        query = query.where(ts < _us(q.until))
    return query.order_by(ts, idx).limit(q.limit + 1)


class AuditReader:
    """Reads through `read_engine` when given: on SQLite a read-only engine whose transactions are
    deferred, so readers neither wait for nor hold up the writer (the main engine begins every
    transaction IMMEDIATE, which takes the write lock)."""

    def __init__(self, engine: AsyncEngine, *, read_engine: AsyncEngine | None = None) -> None:
        self._engine = read_engine or engine
        self._nodes: OrderedDict[NodeKey, bytes] = OrderedDict()
        self._levels: dict[int, bytearray] = {}  # level -> its first nodes, 32 bytes each, in index order
        self._dense_lock = asyncio.Lock()
        self._known_size = 0

    async def size(self) -> int:
        async with reading(self._engine) as conn:
            size = int((await conn.execute(select(tables.head.c.size).where(tables.head.c.id == 1))).scalar_one())
        self._known_size = max(self._known_size, size)
        return size

    async def _size_at_least(self, wanted: int) -> int:
        """The log size, re-read only when `wanted` is beyond what is already known."""
        return self._known_size if wanted <= self._known_size else await self.size()

    async def leaves(self, start: int, end: int) -> list[tuple[int, bytes | None]]:
        return [(i, leaf) for i, leaf, _ in await self.rows(start, end)]

    async def rows(self, start: int, end: int) -> list[tuple[int, bytes | None, bytes]]:
        """(index, leaf or None when pruned, leaf hash) for start <= index < end (at most 1000)."""
        if start < 0:
            raise InvalidParameter("start", "'start' must be a non-negative integer.")
        if end <= start:
            raise InvalidParameter("end", "'end' must be greater than 'start'.")
        if end - start > MAX_ENTRIES:
            raise InvalidParameter("end", f"'end' must be at most 'start' + {MAX_ENTRIES}: at most {MAX_ENTRIES} "
                                          "entries are returned at once.")
        e = tables.entries
        query = select(e.c.idx, e.c.leaf, e.c.leaf_hash).where(e.c.idx >= start, e.c.idx < end).order_by(e.c.idx)
        async with reading(self._engine) as conn:
            return [(int(r.idx), as_bytes(r.leaf), as_bytes(r.leaf_hash) or b"") for r in await conn.execute(query)]

    async def latest_checkpoint_note(self) -> str | None:
        async with reading(self._engine) as conn:
            c = tables.checkpoints
            row = (await conn.execute(select(c.c.note).order_by(c.c.size.desc()).limit(1))).first()
        return str(row.note) if row else None

    async def checkpoints(self) -> list[tuple[int, bytes, str]]:
        async with reading(self._engine) as conn:
            rows = await conn.execute(
                select(tables.checkpoints.c.size, tables.checkpoints.c.root, tables.checkpoints.c.note).order_by(
                    tables.checkpoints.c.size
                )
            )
            return [(int(r.size), bytes(r.root), str(r.note)) for r in rows]

    async def _fetch_nodes(self, conn: AsyncConnection, keys: list[NodeKey]) -> None:
        leaves = [index for level, index in keys if level == 0]
        inner = [(level, index) for level, index in keys if level > 0]
        parts = []
        if leaves:
            e = tables.entries
            parts.append(select(literal(0).label("level"), e.c.idx, e.c.leaf_hash.label("hash"))
                         .where(e.c.idx.in_(leaves)))
        n = tables.nodes
        for level in sorted({level for level, _ in inner}):  # one indexed IN per level (a row-value IN scans)
            wanted = [index for lvl, index in inner if lvl == level]
            parts.append(select(n.c.level, n.c.idx, n.c.hash).where(n.c.level == level, n.c.idx.in_(wanted)))
        query = parts[0] if len(parts) == 1 else union_all(*parts)
        for row in await conn.execute(query):
            self._nodes[(int(row.level), int(row.idx))] = bytes(row.hash)
        while len(self._nodes) > NODE_CACHE:
            self._nodes.popitem(last=False)

    def _dense(self, level: int) -> bool:
        """Whether nodes of `level` are kept densely in memory (all of them, about 32 bytes each)."""
        return max(self._known_size, 1) >> level <= DENSE_NODES

    async def _extend(self, level: int, upto: int) -> None:
        """Read the nodes of `level` from the first one not in memory up to `upto`, in index order."""
        async with self._dense_lock:
            buf = self._levels.setdefault(level, bytearray())
            start = len(buf) // 32
            if start >= upto:
                return
            if level == 0:
                sql = "SELECT leaf_hash FROM audit_entries WHERE idx >= {} AND idx < {} ORDER BY idx"
            else:
                sql = f"SELECT hash FROM audit_nodes WHERE level = {int(level)} AND idx >= {{}} AND idx < {{}} "
                sql += "ORDER BY idx"
            async with reading(self._engine) as conn:
                for lo in range(start, upto, DENSE_CHUNK):
                    hi = min(lo + DENSE_CHUNK, upto)
                    hashes = (await conn.exec_driver_sql(sql.format(int(lo), int(hi)))).scalars().all()
                    joined = b"".join(as_bytes(h) or b"" for h in hashes)
                    if len(hashes) != hi - lo or len(joined) != 32 * len(hashes):
                        return  # a gap or a bad hash: the lookup falls back to a query, which reports it
                    buf += joined

    async def warm(self) -> None:
        """Read the levels kept in memory up to the current size, so the first proofs are fast."""
        size = await self.size()
        for level in range(size.bit_length()):
            if self._dense(level):
                await self._extend(level, size >> level)

    async def get_nodes(self, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
        """Node hashes by (level, index), level 0 being leaf hashes. Levels small enough are kept
        whole in memory (perfect nodes never change); others go through an LRU and the database."""
        found: dict[NodeKey, bytes] = {}
        sparse: list[NodeKey] = []
        for level in sorted({level for level, _ in keys}):
            wanted = [index for lvl, index in keys if lvl == level]
            if not self._dense(level):
                sparse += [(level, index) for index in wanted]
                continue
            buf = self._levels.get(level, b"")
            if max(wanted) >= len(buf) // 32:
                await self._extend(level, max(max(wanted) + 1, self._known_size >> level))
                buf = self._levels[level]
            for index in wanted:
                if index < len(buf) // 32:
                    found[(level, index)] = bytes(buf[index * 32:(index + 1) * 32])
                else:
                    sparse.append((level, index))
        missing = [k for k in dict.fromkeys(sparse) if k not in self._nodes]
        if missing:
            async with reading(self._engine) as conn:
                for start in range(0, len(missing), 500):
                    await self._fetch_nodes(conn, missing[start:start + 500])
        for key in sparse:
            if key in self._nodes:
                found[key] = self._nodes[key]
        lost = [k for k in keys if k not in found]
        if lost:
            raise AuditUnavailable(f"The audit tree is missing node {lost[0]}; the store is damaged.")
        return found

    async def inclusion_proofs(self, indices: list[int], tree_size: int) -> dict[int, list[bytes]]:
        """Inclusion proofs of many leaves in the tree of `tree_size`, their nodes fetched together."""
        wanted: list[NodeKey] = []
        for index in indices:
            def compute(get: Callable[[int, int], bytes], i: int = index) -> list[bytes]:
                return inclusion_proof_from_nodes(i, tree_size, get)

            wanted += needed_nodes(compute)
        found = await self.get_nodes(wanted)
        return {i: inclusion_proof_from_nodes(i, tree_size, lambda level, n: found[(level, n)]) for i in indices}

    async def _with_nodes(self, compute: Callable[[Callable[[int, int], bytes]], list[bytes]]) -> list[bytes]:
        found = await self.get_nodes(needed_nodes(compute))
        return compute(lambda level, index: found[(level, index)])

    async def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        size = await self._size_at_least(tree_size)
        if tree_size < 1 or tree_size > size:
            raise InvalidParameter("tree_size", f"'tree_size' must be between 1 and the log size {size}.")
        if not 0 <= index < tree_size:
            raise InvalidParameter("index", "'index' must be below 'tree_size'.")
        return await self._with_nodes(lambda get: inclusion_proof_from_nodes(index, tree_size, get))

    async def consistency(self, first: int, second: int) -> list[bytes]:
        size = await self._size_at_least(second)
        if second < 1 or second > size:
            raise InvalidParameter("second", f"'second' must be between 1 and the log size {size}.")
        if not 1 <= first <= second:
            raise InvalidParameter("first", "'first' must be between 1 and 'second'.")
        return await self._with_nodes(lambda get: consistency_proof_from_nodes(first, second, get))

    async def search(self, q: SearchQuery) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
        """One page of hits, oldest first, and the cursor of the next page (None at the end)."""
        if not 1 <= q.limit <= MAX_SEARCH_PAGE:
            raise InvalidParameter("limit", f"'limit' must be between 1 and {MAX_SEARCH_PAGE}.")
        if q.since is not None and q.until is not None and q.until <= q.since:
            raise InvalidParameter("until", "'until' must be later than 'since'.")
        async with reading(self._engine) as conn:
            rows = (await conn.execute(search_statement(q))).all()
        page = rows[: q.limit]
        hits = [(int(r.idx), orjson.loads(r.leaf) if r.leaf is not None else {"pruned": True}) for r in page]
        following = format_cursor(int(page[-1].ts_us), int(page[-1].idx)) if len(rows) > q.limit else None
        return hits, following

    async def count_entries(self) -> int:
        async with reading(self._engine) as conn:
            return int((await conn.execute(select(func.count()).select_from(tables.entries))).scalar_one())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def require_entry(hits: list[Any], what: str) -> None:
    if not hits:
        raise NotFound(f"No {what}.")
