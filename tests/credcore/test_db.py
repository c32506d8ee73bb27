"""SQLite transactions: writes (`engine.begin()`) take the write lock up front; reads
(`reading(engine)`) take none, so a reader never holds up a writer such as the audit log's."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables as audit_tables
from audit.writer import AuditWriter
from credcore.db import create_schema, make_engine, reading
from crosstab import tables as crosstab_tables
from gateway.oauth.tables import metadata as oauth_metadata
from policies.store import metadata as policy_metadata


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


async def test_replicas_creating_tables_at_once_on_an_empty_postgresql_database_all_succeed(pg_url: str) -> None:
    """Without a lock two processes both see a table missing, and one fails creating it."""
    async def start(engine: AsyncEngine) -> None:
        for create in (audit_tables.create_schema, oauth_metadata.create_all, policy_metadata.create_all,
                       crosstab_tables.metadata.create_all):
            async with engine.begin() as conn:
                await create_schema(conn, create)
        writer = AuditWriter(engine)  # also inserts the log's head row once
        await writer.start()
        await writer.close()

    engines = [make_engine(pg_url) for _ in range(6)]
    try:
        await asyncio.gather(*(start(engine) for engine in engines))
        async with reading(engines[0]) as conn:
            assert (await conn.execute(text("SELECT count(*) FROM audit_head"))).scalar_one() == 1
    finally:
        for engine in engines:
            await engine.dispose()
