"""Reading and checking ranges of a stored log, in worker processes or in this one.

A worker reads its own range straight from the database (the stdlib sqlite3 module, or asyncpg
for PostgreSQL), so no leaf crosses a process boundary: only the small `ChunkReport` comes back.
The checks are those of audit/logcheck.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import sqlite3
from collections.abc import Sequence
from urllib.parse import quote

from sqlalchemy.engine import make_url

from audit.logcheck import ChunkReport, Row, as_bytes, check_chunk

QUERY = "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE idx >= {lo} AND idx < {hi} ORDER BY idx"


def _sqlite_rows(path: str, lo: int, hi: int) -> list[Row]:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
    try:
        cur = conn.execute(QUERY.format(lo="?", hi="?"), (lo, hi))
        return [(int(i), as_bytes(leaf), as_bytes(h)) for i, leaf, h in cur]
    finally:
        conn.close()


async def _pg_rows(dsn: str, lo: int, hi: int) -> list[Row]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(QUERY.format(lo="$1", hi="$2"), lo, hi)
        return [(int(r[0]), as_bytes(r[1]), as_bytes(r[2])) for r in records]
    finally:
        await conn.close()


def read_rows(url: str, lo: int, hi: int) -> list[Row]:
    """Rows (index, leaf or None, stored leaf hash) of [lo, hi), in index order (blocking)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_rows(parsed.database or "", lo, hi)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return asyncio.run(_pg_rows(dsn, lo, hi))


def check_range(url: str, lo: int, hi: int, sizes: Sequence[int], end: int) -> ChunkReport:
    """Read [lo-2, hi+1) and check [lo, hi) (the worker's job; `end` bounds the lookahead)."""
    rows = read_rows(url, max(0, lo - 2), min(hi + 1, end + 1))
    return check_chunk(rows, lo, hi, sizes, end=end)


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def process_pool(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """Workers started with `spawn`: the caller may hold threads and an event loop (never fork those)."""
    return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
