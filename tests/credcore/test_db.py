"""SQLite transactions: writes (`engine.begin()`) take the write lock up front; reads
(`reading(engine)`) take none, so a reader never holds up a writer such as the audit log's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from credcore.db import make_engine, reading


def other_writer(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=0)  # never waits for a lock


async def test_a_read_takes_no_write_lock_and_a_write_takes_it_up_front(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        other = other_writer(path)
        async with reading(engine) as conn:
            assert (await conn.execute(text("SELECT n FROM t"))).scalar_one() == 1  # its transaction is open
            other.execute("BEGIN IMMEDIATE")  # would raise 'database is locked' under a write lock
            other.execute("INSERT INTO t VALUES (2)")
            other.execute("COMMIT")
            # The reader's snapshot is stable: it still sees one row.
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))  # no write yet, and still the lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.close()
    finally:
        await engine.dispose()
