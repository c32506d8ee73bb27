"""One async SQLAlchemy engine per process, the same for SQLite and PostgreSQL.

SQLite is opened in WAL mode with synchronous=FULL (a commit is on disk when it returns, which
"no audit, no data" relies on). Writes go through `engine.begin()`, whose transaction starts
with BEGIN IMMEDIATE, so a read-then-write transaction takes the write lock up front instead of
failing mid-way when another process committed in between. Reads go through `reading(engine)`,
whose transaction starts deferred and takes no write lock at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from credcore.errors import ConfigError

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """`sqlite:///x.db` → `sqlite+aiosqlite:///x.db`, `postgresql://…` → `postgresql+asyncpg://…`."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError; any parse failure is a config error
        # The URL is not echoed: it may carry a password.
        raise ConfigError("the database URL is not a valid SQLAlchemy URL (e.g. sqlite:///credgate.db).") from exc
    driver = parsed.drivername
    if driver in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[driver])
    elif driver not in _DRIVERS.values():
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"database URL {shown!r}: only SQLite and PostgreSQL are supported.")
    return parsed.render_as_string(hide_password=False)


# A checkpoint copies each page of the WAL back into the database once, however often it was
# rewritten: the audit log's hot pages (the tails of its tables and indexes) are rewritten by
# every batch. Checkpointing every 16,000 pages (~64 MB of WAL) instead of SQLite's default
# 1,000 copies and syncs far fewer pages: +6% gateway throughput in bench/bench_gateway.py.
WAL_CHECKPOINT_PAGES = 16_000


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, busy_timeout: float = 5.0, read_only: bool = False, **kwargs: Any) -> AsyncEngine:
    """The engine for `url`. On SQLite, `busy_timeout` is how many seconds a write waits for a
    lock held by another connection before it fails (and the audit log answers 503).

    `read_only` (for readers such as `audit verify`): a SQLite file is opened read-only, is never
    created, and its transactions are plain deferred ones, so reading a live gateway's database
    takes no write lock and never holds up its audit appends."""
    target = async_url(url)
    if read_only and target.startswith("sqlite"):
        target, kwargs = _read_only_sqlite(target, kwargs)
    engine = create_async_engine(target, **kwargs)
    if is_sqlite(engine):
        _sqlite_pragmas(engine, busy_timeout_ms=max(0, int(busy_timeout * 1000)), read_only=read_only)
    return engine


_READS_ONLY = "credgate_reads_only"


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (its transaction is rolled back at the end, like any `connect()`).
    On SQLite its transaction begins deferred, so it takes no write lock: a search, a poll or a
    checkpoint's reads never hold up the audit writer. Under BEGIN IMMEDIATE a reader held the
    lock for as many driver-thread round trips as it ran statements, and the writer's batches
    waited for it."""
    async with engine.connect() as conn:
        await conn.execution_options(**{_READS_ONLY: True})
        yield conn


_SCHEMA_LOCK = 0x63726564_67617465  # "credgate": the advisory lock that schema changes take on PostgreSQL


async def create_schema(conn: AsyncConnection, create: Callable[[Connection], Any]) -> None:
    """Run `create` (e.g. `metadata.create_all`) in `conn`'s write transaction, one process at a
    time. Two gateway replicas starting on an empty PostgreSQL database both see a table missing
    and both create it, and one fails on the catalog's unique index; a transaction-scoped
    advisory lock makes the second wait and then find the table. (On SQLite the transaction's
    BEGIN IMMEDIATE already serialises them.)"""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
    await conn.run_sync(create)


def _read_only_sqlite(target: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parsed = make_url(target)
    path = parsed.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigError("a read-only SQLite database needs a plain file path (sqlite:///path/to/file.db).")
    if not Path(path).is_file():
        raise ConfigError(f"there is no SQLite database at {path}.")
    # SQLAlchemy's documented form for SQLite URI filenames: sqlite:///file:PATH?mode=ro&uri=true
    parsed = parsed.set(database=f"file:{Path(path).resolve().as_posix()}", query={"mode": "ro", "uri": "true"})
    return parsed.render_as_string(hide_password=False), kwargs


def _sqlite_pragmas(engine: AsyncEngine, *, busy_timeout_ms: int, read_only: bool = False) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        deferred = read_only or conn.get_execution_options().get(_READS_ONLY, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: Any) -> None:
        # A connection opened while the file was read-only stays read-only, and one whose write
        # failed may stay broken, after the file recovers: treated as a disconnect, the pool is
        # dropped and the next transaction opens the file afresh (so the audit log recovers).
        if _needs_reopen(context.original_exception):
            context.is_disconnect = True


_REOPEN_CODES = ("SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")
_REOPEN_MESSAGES = ("readonly database", "disk i/o error", "unable to open database file")


def _needs_reopen(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    message = str(exc).lower()
    return name.startswith(_REOPEN_CODES) or any(text in message for text in _REOPEN_MESSAGES)
