"""Reading the audit log: entries, checkpoints, proofs and search (I/O over the audit tables).

Proofs are computed from stored perfect-subtree hashes: the proof functions are run once with
a recording lookup to learn which nodes they need, the nodes are fetched in one go, and the
functions run again on them (O(log n) rows, never a rebuild).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.rfc9162 import consistency_proof_from_nodes, inclusion_proof_from_nodes
from audit.writer import load_nodes, needed_nodes
from credcore.errors import InvalidParameter, NotFound

MAX_ENTRIES = 1000
SEARCH_PAGE = 100


@dataclass(frozen=True)
class SearchQuery:
    operator: str | None = None
    uscc: str | None = None
    decision: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after: int = -1
    limit: int = SEARCH_PAGE


class AuditReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def size(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(tables.head.c.size).where(tables.head.c.id == 1))).scalar_one())

    async def leaves(self, start: int, end: int) -> list[tuple[int, bytes | None]]:
        if start < 0:
            raise InvalidParameter("start", "'start' must be a non-negative integer.")
        if end <= start:
            raise InvalidParameter("end", "'end' must be greater than 'start'.")
        if end - start > MAX_ENTRIES:
            raise InvalidParameter("end", f"at most {MAX_ENTRIES} entries are returned at once.")
        query = (
            select(tables.entries.c.idx, tables.entries.c.leaf)
            .where(tables.entries.c.idx >= start, tables.entries.c.idx < end)
            .order_by(tables.entries.c.idx)
        )
        async with self._engine.connect() as conn:
            return [(int(r.idx), bytes(r.leaf) if r.leaf is not None else None) for r in await conn.execute(query)]

    async def latest_checkpoint_note(self) -> str | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(tables.checkpoints.c.note).order_by(tables.checkpoints.c.size.desc()).limit(1)
                )
            ).first()
        return str(row.note) if row else None

    async def checkpoints(self) -> list[tuple[int, bytes, str]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(tables.checkpoints.c.size, tables.checkpoints.c.root, tables.checkpoints.c.note).order_by(
                    tables.checkpoints.c.size
                )
            )
            return [(int(r.size), bytes(r.root), str(r.note)) for r in rows]

    async def verifier_keys(self) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(tables.keys).order_by(tables.keys.c.not_before_us))
            return [
                {
                    "verifier_key": r.verifier_key,
                    "not_before_us": r.not_before_us,
                    "not_after_us": r.not_after_us,
                    "active": bool(r.active),
                }
                for r in rows
            ]

    async def _with_nodes(self, compute: Callable[[Callable[[int, int], bytes]], list[bytes]]) -> list[bytes]:
        async with self._engine.connect() as conn:
            found = await load_nodes(conn, needed_nodes(compute))
        return compute(lambda level, index: found[(level, index)])

    async def inclusion(self, index: int, tree_size: int) -> list[bytes]:
        size = await self.size()
        if tree_size < 1 or tree_size > size:
            raise InvalidParameter("tree_size", f"'tree_size' must be between 1 and the log size {size}.")
        if not 0 <= index < tree_size:
            raise InvalidParameter("index", "'index' must be below 'tree_size'.")
        return await self._with_nodes(lambda get: inclusion_proof_from_nodes(index, tree_size, get))

    async def consistency(self, first: int, second: int) -> list[bytes]:
        size = await self.size()
        if second < 1 or second > size:
            raise InvalidParameter("second", f"'second' must be between 1 and the log size {size}.")
        if not 1 <= first <= second:
            raise InvalidParameter("first", "'first' must be between 1 and 'second'.")
        return await self._with_nodes(lambda get: consistency_proof_from_nodes(first, second, get))

    async def search(self, q: SearchQuery) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        e = tables.entries
        query = select(e.c.idx, e.c.leaf).where(e.c.idx > q.after)
        if q.uscc is not None:
            subjects = tables.subjects
            query = query.join(subjects, subjects.c.idx == e.c.idx).where(subjects.c.uscc == q.uscc)
        if q.operator is not None:
            query = query.where(e.c.client_id == q.operator)
        if q.decision is not None:
            query = query.where(e.c.decision == q.decision)
        if q.since is not None:
            query = query.where(e.c.ts_us >= int(q.since.timestamp() * 1e6))
        if q.until is not None:
            query = query.where(e.c.ts_us < int(q.until.timestamp() * 1e6))
        query = query.order_by(e.c.idx).limit(q.limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        hits = [(int(r.idx), json.loads(r.leaf) if r.leaf is not None else {"pruned": True}) for r in rows[: q.limit]]
        following = hits[-1][0] if len(rows) > q.limit else None
        return hits, following


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def require_entry(hits: list[Any], what: str) -> None:
    if not hits:
        raise NotFound(f"No {what}.")
