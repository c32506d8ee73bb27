"""One audit batch in one SQLite transaction, written on the event loop's own thread when it can
be, and made durable by one fsync of the WAL.

Why: on the driver's thread (aiosqlite) a batch of N rows hands the GIL back and forth with the
event loop around every row the sqlite3 module steps, so the writer and the loop slow each other
down, while the statements themselves take microseconds. What must stay off the loop is long
waiting: for a lock another connection holds, and for a slow disk (`WalSync`).

Rules (`write_now`, on the pooled connection the writer has checked out):
1. It never waits for a lock: with busy_timeout=0 a busy database answers None at once, and the
   caller runs `write_batch` on the driver's thread instead, which waits out the busy timeout.
2. It commits with synchronous=NORMAL (in WAL mode the commit writes its frames without syncing);
   the caller then awaits `WalSync`, an fsync of the WAL file, and answers no one before it
   returns. Every frame of a batch is on disk before any entry of it is released: the guarantee
   of synchronous=FULL. (Other connections may read a batch between its commit and its sync; a
   power cut in that window loses a batch that no one was told had been recorded. A checkpoint
   that covers it is served only once its own row is committed with synchronous=FULL, which
   syncs the WAL, this batch's frames included.)
3. The connection's own settings (busy timeout, synchronous=FULL) are restored before it goes
   back to the pool, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from audit.fsync_helper import FsyncHelper, HelperGone

log = logging.getLogger(__name__)

Statements = list[tuple[str, list[tuple[Any, ...]]]]  # (INSERT, rows) per table
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def write_batch(conn: sqlite3.Connection, base: tuple[int, str], writes: Statements, head: tuple[int, str]) -> bool:
    """One batch in one SQLite transaction: False, writing nothing, when the head is no longer `base`."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT size, last_hash FROM audit_head WHERE id = 1").fetchone()
        if row is None or (int(row[0]), str(row[1])) != base:
            conn.execute("ROLLBACK")
            return False
        for sql, params in writes:
            conn.executemany(sql, params)
        conn.execute("UPDATE audit_head SET size = ?, last_hash = ? WHERE id = 1", head)
        conn.execute("COMMIT")
        return True
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def in_wal_mode(conn: sqlite3.Connection) -> bool:
    return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


def write_now(conn: sqlite3.Connection, base: tuple[int, str], writes: Statements,
              head: tuple[int, str]) -> bool | None:
    """`write_batch` without waiting for a lock and without syncing (rules 1-3): True, False as
    `write_batch`, or None when the database is busy. Other SQLite errors propagate."""
    timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.execute("PRAGMA busy_timeout = 0")
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        return write_batch(conn, base, writes, head)
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) in _BUSY:
            return None
        raise
    finally:
        conn.execute(f"PRAGMA synchronous = {int(synchronous)}")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalSync:
    """The fsync of a database's WAL after each batch (rule 2): by the fsync helper process when
    there is one (audit/fsync_helper.py: the loop neither blocks nor shares its GIL), else, and
    from the moment the helper is gone, in this process: on the event loop's thread while the disk
    syncs quickly, in a worker thread while it is slow.

    Why not always a thread: a worker that finishes while the loop is busy wakes for the GIL at
    every system call the loop makes until it gets it. Measured under load on one core, that
    cost the loop about 0.5 ms of CPU per batch (45 µs a request, more than the SQL of the
    batch), while a quick fsync (0.2-0.4 ms here) blocks it for less. A slow disk must not stall
    every request, though:
    - one sync of `slow` seconds or more on the loop sends the next ones to a thread at once;
    - a sync in a thread is timed with its wait for the GIL, which a busy loop stretches: a
      quick one proves the disk quick (a moving average of them brings the syncs back), a slow
      one proves nothing and is not counted (the GIL wait alone kept syncs in threads under
      load, measured here);
    - so every `PROBE_EVERY`-th sync while in threads runs on the loop and measures the disk
      itself: quick, and the syncs come back at once.
    A disk that stalls without warning is met on the loop once per stall: nothing predicts it.
    """

    PROBE_EVERY = 64

    def __init__(self, database: str, *, slow: float = 0.002, timer: Callable[[], float] = time.perf_counter,
                 fsync: Callable[[str], None] = fsync_file) -> None:
        self.path = database + "-wal"
        self.helper: FsyncHelper | None = None  # see `with_helper`
        self._slow = slow
        self._timer = timer
        self._fsync = fsync
        self.typical = 0.0  # seconds: a moving average of recent syncs
        self._in_threads = 0  # syncs run in a thread since the last one on the loop

    @classmethod
    def with_helper(cls, database: str) -> WalSync:
        """The audit writer's: syncs by a helper process, or in this process if none can start."""
        sync = cls(database)
        sync.helper = FsyncHelper.start(sync.path)
        return sync

    @property
    def inline(self) -> bool:
        return self.typical < self._slow

    async def __call__(self) -> None:
        """Sync the WAL; OSError if the disk refuses."""
        if self.helper is not None:
            try:
                await self.helper.sync()
                return
            except HelperGone:  # it promised nothing for this batch: synced here instead
                log.warning("audit log: the fsync helper is gone; the WAL is synced in this process from now on")
                self.helper = None
        if self.inline or self._in_threads >= self.PROBE_EVERY:
            self._in_threads = 0
            self._observe(self._timed(), on_loop=True)
        else:
            self._in_threads += 1
            self._observe(await asyncio.get_running_loop().run_in_executor(None, self._timed), on_loop=False)

    def _observe(self, took: float, *, on_loop: bool) -> None:
        if took >= self._slow:
            if on_loop:
                self.typical = max(took, self.typical)
        elif on_loop and not self.inline:
            self.typical = took  # a quick probe
        else:
            self.typical += (took - self.typical) / 8

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None

    def _timed(self) -> float:
        start = self._timer()
        self._fsync(self.path)
        return self._timer() - start
