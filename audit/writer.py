"""The durable, group-committed audit writer.

Rules (the gateway's "no audit, no data" rests on them):
1. `append(entry)` (and the future of `enqueue(entry)`) gives the entry's index only after the
   transaction holding it is durable (SQLite: WAL, and either synchronous=FULL or an fsync of
   the WAL after the commit, see audit/sqlite_batch.py; PostgreSQL: a normal commit).
2. Entries of concurrent callers are committed together: while one batch is being written the
   next one gathers, so throughput grows with load and each caller still waits for its own.
3. The chain is extended under the `audit_head` row lock. Several processes may append to one
   database; each batch re-reads the head and, if another process moved it, reloads the right
   edge of the tree from `audit_nodes` before linking `prev_hash`.
4. If a batch fails, every caller in it gets AuditUnavailable and nothing of it is kept in
   memory; the next batch starts from the head in the database.

Speed: what does not depend on the chain (the entry's canonical JSON cut around its `prev_hash`
value, its search columns) is prepared for the whole batch in one loop; linking then only splices
`prev_hash` in, hashes and extends the tree. On SQLite the batch is one transaction (rule 3's
head check included) on a connection the writer keeps, written on the loop's thread when the
database is free and then synced by `WalSync` (audit/sqlite_batch.py), else run on the driver's
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert, select, union_all, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit import tables
from audit.chain import encode_entry
from audit.rfc9162 import Frontier, leaf_hash
from audit.sqlite_batch import WalSync, in_wal_mode, write_batch, write_now
from credcore.db import create_schema
from credcore.errors import AuditUnavailable

GENESIS_PREV = "0" * 64
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeHead:
    size: int
    root: bytes


@dataclass
class _Pending:
    future: asyncio.Future[int]
    # Everything that does not depend on the chain is prepared first (`_prepare_all`), so that
    # linking a batch is only the prev_hash splice, the hashes and the tree.
    head: bytes = b'{"prev_hash":"'  # the leaf up to the prev_hash value ...
    tail: bytes = b'"}'  # ... and after it
    columns: tuple[int, str | None, str, int, str] = (0, None, "", 0, "access")  # ts_us, client, decision...
    codes: tuple[str, ...] = ()
    released: tuple[tuple[int, str, str | None], ...] = ()  # (pos, sha256, record id) per released record


def _ts_us(entry: dict[str, Any]) -> int:
    when = dt.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))
    return int(when.timestamp() * 1_000_000)


def subject_codes(entry: dict[str, Any]) -> tuple[str, ...]:
    """The companies an entry concerns, as its audit_subjects rows name them."""
    return tuple(sorted({str(code) for code in entry.get("uscc") or ()}))


def _prepare(entry: dict[str, Any], future: asyncio.Future[int]) -> _Pending:
    """Encode the entry around its future `prev_hash` value and read its search columns; raises
    (KeyError, TypeError, ValueError, OverflowError, or RecursionError for absurd nesting) for an
    entry that cannot be recorded."""
    head, tail = cut_at_prev_hash(entry)  # any prev_hash the caller put in is replaced
    client = entry.get("client_id")
    columns = (_ts_us(entry), None if client is None else str(client), str(entry.get("decision", "")),
               int(entry.get("status") or 0), str(entry.get("kind", "access")))
    codes = subject_codes(entry)
    released = tuple((r["pos"], r["sha256"], r["record_id"]) for r in record_index_rows(0, entry.get("records")))
    return _Pending(future, head, tail, columns, codes, released)


def _prepare_all(queued: list[tuple[dict[str, Any], asyncio.Future[int]]]) -> list[_Pending]:
    """Prepare a batch in one loop (one pass keeps the encoder hot in the caches, where a call per
    request ran among the rest of each request's work); an entry that cannot be recorded fails
    its own caller only."""
    batch: list[_Pending] = []
    for entry, future in queued:
        try:
            batch.append(_prepare(entry, future))
        except Exception as exc:  # whatever one entry holds, it must not stop the log for the others
            if not isinstance(exc, (KeyError, TypeError, ValueError, OverflowError)):
                log.exception("audit log: an entry could not be prepared")
            if not future.done():
                future.set_exception(AuditUnavailable(f"The audit entry cannot be recorded ({type(exc).__name__})."))
    return batch


_PREV_MEMBER = b'"prev_hash":"'
_MARKED = _PREV_MEMBER + GENESIS_PREV.encode("ascii") + b'"'


def cut_at_prev_hash(body: dict[str, Any]) -> tuple[bytes, bytes]:
    """The RFC 8785 form of `body` with its `prev_hash` member (set, or replaced), cut around that
    member's value: `head + prev + tail` is then the leaf for any `prev`. One encoding with a placeholder; the
    byte pattern can only be a member (a quote inside a string is escaped), and if a nested
    object holds the same member the halves are encoded apart: JCS writes sorted members one
    after another, so the splice is exact either way."""
    leaf = encode_entry({**body, "prev_hash": GENESIS_PREV})
    at = leaf.find(_MARKED)
    if at >= 0 and leaf.find(_MARKED, at + 1) < 0:
        cut = at + len(_PREV_MEMBER)
        return leaf[:cut], leaf[cut + len(GENESIS_PREV):]
    left = encode_entry({k: v for k, v in body.items() if k < "prev_hash"})
    right = encode_entry({k: v for k, v in body.items() if k > "prev_hash"})
    head = left[:-1] + b"," + _PREV_MEMBER if len(left) > 2 else b"{" + _PREV_MEMBER
    tail = b'",' + right[1:] if len(right) > 2 else b'"}'
    return head, tail


Writes = tuple[Table, list[tuple[Any, ...]]]  # a table and its rows, each a tuple in column order


class AuditWriter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 1024) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int]]] = []  # prepared by the batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._size = -1  # unknown until the first batch reads the head
        self._prev = GENESIS_PREV
        self._frontier = Frontier()  # the right edge of the tree, to link and hash appends
        self._head_listeners: list[Callable[[TreeHead], None]] = []
        self._direct = engine.dialect.name == "sqlite"  # one transaction per batch on the raw connection
        self._wal_sync: WalSync | None = None  # the SQLite file's, when batches can be written on the loop
        self._held: tuple[AsyncConnection, Any, sqlite3.Connection] | None = None  # see _held_connection
        self._held_pool: object = None  # the engine's pool it came from
        self._idle = asyncio.Event()  # set while nothing is queued or being committed
        self._idle.set()
        self.batches = 0

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await create_schema(conn, tables.create_schema)
            if (await conn.execute(select(tables.head.c.size))).first() is None:
                await conn.execute(insert(tables.head).values(id=1, size=0, last_hash=GENESIS_PREV))
            if self._direct:
                path = await conn.run_sync(lambda sync: _wal_database(sync.connection.dbapi_connection))
                self._wal_sync = WalSync.with_helper(path) if path else None
        self._task = asyncio.create_task(self._run(), name="audit-writer")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """Should the writer ever stop (closed, or a bug), nobody waits for it in vain: what is
        queued fails with AuditUnavailable, and `enqueue` refuses from now on."""
        if not task.cancelled() and task.exception() is not None:
            log.error("audit log: the writer stopped", exc_info=task.exception())
        leftover, self._pending = self._pending, []
        for _, future in leftover:
            if not future.done():
                future.set_exception(AuditUnavailable("The audit log stopped, so nothing can be released."))

    async def close(self) -> None:
        # Drain what is queued and what is being committed: callers are waiting for it and data
        # depends on it. A writer task that has died drains nothing, so it is not waited for.
        if self._task is not None and not self._task.done() and not self._idle.is_set():
            idle = asyncio.ensure_future(self._idle.wait())
            await asyncio.wait({idle, self._task}, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        leftover, self._pending = self._pending, []
        for _, future in leftover:
            if not future.done():
                future.set_exception(AuditUnavailable("The audit log is closed, so nothing can be released."))
        await self._release_held()
        if self._wal_sync is not None:
            self._wal_sync.close()

    @property
    def writes_on_loop(self) -> bool:
        """Whether batches are written on the event loop's thread (a SQLite file in WAL mode)."""
        return self._wal_sync is not None

    def on_head(self, listener: Callable[[TreeHead], None]) -> None:
        """Call `listener` with the new tree head after each committed batch."""
        self._head_listeners.append(listener)

    async def append(self, entry: dict[str, Any]) -> int:
        """Make `entry` durable and return its index; raises AuditUnavailable otherwise."""
        return await self.enqueue(entry)

    def enqueue(self, entry: dict[str, Any]) -> asyncio.Future[int]:
        """Queue `entry`: the future resolves to its index once it is durable, or fails with
        AuditUnavailable (this entry alone, if it cannot be recorded). The entry must not change
        until then: the batch prepares it. Cancelling the future does not withdraw the entry: it
        is recorded all the same (a handler cancelled by a client's hang-up leaves no request
        half-recorded)."""
        if self._task is None or self._task.done():
            raise AuditUnavailable("The audit log is not running, so nothing can be released.")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if len(self._pending) == 1:
            self._idle.clear()
            self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                queued = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    batch = _prepare_all(queued)
                    if batch:
                        await self._commit_batch(batch)
                finally:  # a safety net: every caller of the batch hears an answer, whatever stopped it
                    for _, future in queued:
                        if not future.done():
                            future.set_exception(AuditUnavailable("The audit log failed; nothing is released."))
            self._idle.set()

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        if self._direct and self._size >= 0:
            try:
                if await self._commit_direct(batch):
                    return
            except (sqlite3.Error, SQLAlchemyError, OSError) as exc:
                self._failed(batch, exc)
                return
            except BaseException as exc:
                self._broken(batch, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
        try:
            async with self._engine.begin() as conn:
                size, prev, frontier = await self._load_head(conn)
                linked, writes, last = self._link(batch, prev, frontier)
                if linked:
                    for table, table_rows in writes:
                        await insert_rows(conn, table, table_rows)
                    new_size = size + len(linked)
                    await conn.execute(
                        update(tables.head).where(tables.head.c.id == 1).values(size=new_size, last_hash=last)
                    )
        except (SQLAlchemyError, OSError) as exc:
            self._failed(batch, exc)
            return
        except BaseException as exc:
            self._broken(batch, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if not linked:
            return
        self._committed(linked, size, new_size, last, frontier)

    def _failed(self, batch: list[_Pending], exc: BaseException) -> None:
        self._size = -1  # resynchronise from the database next time
        log.error("audit log: a batch of %d entries was not recorded: %s", len(batch), exc)
        error = AuditUnavailable(f"The audit log could not record this request ({type(exc).__name__}).")
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _broken(self, batch: list[_Pending], exc: BaseException) -> None:
        self._size = -1
        if not isinstance(exc, asyncio.CancelledError):
            log.exception("audit log: a batch of %d entries failed", len(batch))
        for item in batch:
            if not item.future.done():
                item.future.set_exception(AuditUnavailable("The audit log failed; nothing is released."))

    async def _commit_direct(self, batch: list[_Pending]) -> bool:
        """SQLite: link on the head this writer last committed and write the batch in one
        transaction on the pooled connection: on the loop's thread when the database is free
        (audit/sqlite_batch.py: no lock wait, then one fsync of the WAL), else as ONE call
        on the connection's own thread (aiosqlite), which waits out the busy timeout. False when
        the head moved (another process appended) or the driver is not aiosqlite: the general
        path then re-reads the head and links again."""
        frontier = Frontier.from_hashes(self._frontier.size, self._frontier.hashes)
        base = (self._size, self._prev)
        linked, tables_rows, last = self._link(batch, self._prev, frontier)
        writes = [(_insert_sql(self._engine.dialect, table), table_rows) for table, table_rows in tables_rows]
        head = (base[0] + len(linked), last)
        held = await self._held_connection()
        if held is None:
            self._direct = False
            return False
        conn, run, raw = held
        try:
            sync = self._wal_sync
            done = write_now(raw, base, writes, head) if sync else None
            if done and sync:
                await sync()
            elif done is None:
                done = await run(write_batch, raw, base, writes, head)
        except sqlite3.Error:
            self._held = None
            await conn.invalidate()  # a fresh connection next time (a read-only or full file may recover)
            raise
        except BaseException:
            await self._release_held()
            raise
        if not done:
            return False
        self._committed(linked, base[0], head[0], last, frontier)
        return True

    async def _held_connection(self) -> tuple[AsyncConnection, Any, sqlite3.Connection] | None:
        """The pooled SQLite connection this writer keeps between batches, with its driver's
        `_execute` and raw connection (checking one out and back in, with its rollback on the
        driver's thread, cost more per batch than a small batch's statements). A new one after an
        error, or once the engine's pool was replaced (`engine.dispose()`); None when the driver
        is not aiosqlite."""
        if self._held is not None and self._held_pool is not self._engine.sync_engine.pool:
            await self._release_held()
        if self._held is None or self._held[0].closed or self._held[0].invalidated:
            conn = await self._engine.connect()
            driver = (await conn.get_raw_connection()).driver_connection
            run, raw = getattr(driver, "_execute", None), getattr(driver, "_conn", None)
            if run is None or not isinstance(raw, sqlite3.Connection):
                await conn.close()
                return None
            self._held, self._held_pool = (conn, run, raw), self._engine.sync_engine.pool
        return self._held

    async def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(SQLAlchemyError, sqlite3.Error, OSError):
                await held[0].close()

    def _committed(self, linked: list[_Pending], size: int, new_size: int, last: str, frontier: Frontier) -> None:
        self._size, self._prev, self._frontier = new_size, last, frontier
        self.batches += 1
        for offset, item in enumerate(linked):
            if not item.future.done():
                item.future.set_result(size + offset)
        head = TreeHead(new_size, frontier.root())
        for listener in self._head_listeners:
            try:
                listener(head)
            except Exception:  # a listener must never stop the writer
                log.exception("audit head listener failed")

    async def _load_head(self, conn: AsyncConnection) -> tuple[int, str, Frontier]:
        query = select(tables.head.c.size, tables.head.c.last_hash).where(tables.head.c.id == 1)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).one()
        size, prev = int(row.size), str(row.last_hash)
        if size == self._size and prev == self._prev:
            frontier = self._frontier
        else:
            frontier = await load_frontier(conn, size)
        # Work on a copy: if the batch fails, the writer's own frontier is untouched.
        return size, prev, Frontier.from_hashes(frontier.size, frontier.hashes)

    def _link(self, batch: list[_Pending], prev: str, frontier: Frontier) -> tuple[list[_Pending], list[Writes], str]:
        """Chain, hash and tree the batch onto `frontier` (which it advances): the entries linked,
        the rows to insert per table (tuples in column order) and the last leaf hash.

        An entry that cannot be recorded (no RFC 3339 `time`, a value canonical JSON cannot
        represent) was refused by `enqueue`, to its own caller only; nothing here can fail per entry."""
        rows: list[tuple[Any, ...]] = []
        subject_rows: list[tuple[Any, ...]] = []
        record_rows: list[tuple[Any, ...]] = []
        node_rows: list[tuple[Any, ...]] = []
        for item in batch:
            leaf = item.head + prev.encode("ascii") + item.tail
            digest = leaf_hash(leaf)
            idx = frontier.size
            ts_us = item.columns[0]
            rows.append((idx, leaf, digest, *item.columns))
            node_rows += frontier.append(digest)[1:]  # level 0 is the leaf hash, kept in audit_entries
            subject_rows += [(code, idx, ts_us) for code in item.codes]
            record_rows += [(idx, pos, sha, rid) for pos, sha, rid in item.released]
            prev = digest.hex()
        writes = [(table, table_rows) for table, table_rows in ((tables.entries, rows), (tables.subjects, subject_rows),
                                                              (tables.records, record_rows), (tables.nodes, node_rows))
                  if table_rows]
        return list(batch), writes, prev


def record_index_rows(idx: int, released: Any) -> list[dict[str, Any]]:
    """The audit_records rows of an entry's `records` list ({"id", "sha256"} per released
    record), for infringement tracing; malformed items are skipped (the leaf keeps them)."""
    if not isinstance(released, list):
        return []
    rows = []
    for pos, item in enumerate(released):
        if isinstance(item, dict) and isinstance(item.get("sha256"), str) and len(item["sha256"]) == 64:
            rid = item.get("id")
            rows.append({"idx": idx, "pos": pos, "sha256": item["sha256"],
                         "record_id": rid[:200] if isinstance(rid, str) and rid else None})
    return rows


_INSERTS: dict[tuple[str, str], str] = {}


def _insert_sql(dialect: Dialect, table: Table) -> str:
    """The INSERT of every column of `table`, compiled once per dialect."""
    key = (dialect.name, table.name)
    if key not in _INSERTS:
        columns = [c.name for c in table.columns]
        _INSERTS[key] = str(insert(table).compile(dialect=dialect, column_keys=columns))
    return _INSERTS[key]


async def insert_rows(conn: AsyncConnection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """INSERT many rows (tuples in column order) with the statement compiled once per dialect
    (Core's per-row parameter processing costs more than the insert itself)."""
    await conn.exec_driver_sql(_insert_sql(conn.dialect, table), rows)


def _wal_database(dbapi: Any) -> str | None:
    """The file of an aiosqlite connection in WAL mode, or None (memory, other modes, other drivers)."""
    raw = getattr(getattr(dbapi, "driver_connection", None), "_conn", None)
    if not isinstance(raw, sqlite3.Connection):
        return None
    try:
        rows = raw.execute("PRAGMA database_list").fetchall()
        path = next((str(row[2]) for row in rows if row[1] == "main"), "")
        return path if path and in_wal_mode(raw) else None
    except sqlite3.ProgrammingError:  # a connection bound to the driver's thread (e.g. :memory:)
        return None


NodeKey = tuple[int, int]  # (level, index) of a perfect subtree; level 0 is a leaf


def needed_nodes(compute: Callable[[Callable[[int, int], bytes]], object]) -> list[NodeKey]:
    """The nodes a computation over `get_node` asks for (which never depends on their values)."""
    wanted: list[NodeKey] = []

    def record(level: int, index: int) -> bytes:
        wanted.append((level, index))
        return b"\x00" * 32

    compute(record)
    return sorted(set(wanted))


async def load_frontier(conn: AsyncConnection, size: int) -> Frontier:
    """The right edge of a tree of `size` leaves, from O(log n) stored nodes."""
    found = await load_nodes(conn, needed_nodes(lambda get: Frontier.from_nodes(size, get)))
    return Frontier.from_nodes(size, lambda level, index: found[(level, index)])


async def load_nodes(conn: AsyncConnection, keys: list[NodeKey]) -> dict[NodeKey, bytes]:
    """Fetch node hashes by (level, index); level 0 is a leaf hash. Two queries whatever the
    levels (leaves, then inner nodes): the checkpointer asks for a few dozen nodes every tick."""
    found: dict[NodeKey, bytes] = {}
    leaves = [index for level, index in keys if level == 0]
    inner = [(level, index) for level, index in keys if level > 0]
    if leaves:
        query = select(tables.entries.c.idx, tables.entries.c.leaf_hash).where(tables.entries.c.idx.in_(leaves))
        for row in await conn.execute(query):
            found[(0, int(row.idx))] = bytes(row.leaf_hash)
    if inner:
        n = tables.nodes
        # One indexed IN per level, in one statement: a row-value IN on (level, idx) scans in SQLite.
        parts = [select(n.c.level, n.c.idx, n.c.hash).where(n.c.level == level,
                                                            n.c.idx.in_([i for lvl, i in inner if lvl == level]))
                 for level in sorted({level for level, _ in inner})]
        inner_query: Any = parts[0] if len(parts) == 1 else union_all(*parts)
        for row in await conn.execute(inner_query):
            found[(int(row.level), int(row.idx))] = bytes(row.hash)
    missing = [key for key in keys if key not in found]
    if missing:
        raise AuditUnavailable(f"The audit tree is missing node {missing[0]}; the store is damaged.")
    return found
