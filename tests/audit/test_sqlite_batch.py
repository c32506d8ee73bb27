"""Batches written on the event loop's thread (audit/sqlite_batch.py): never waiting for a lock,
leaving the pooled connection's settings as they were, and falling back to the driver's thread
(which waits out the busy timeout) when another connection holds the write lock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from audit.sqlite_batch import WalSync, write_batch, write_now
from audit.writer import AuditWriter
from credcore.db import make_engine
from tests.audit.test_writer import assert_log_verifies, entry

INSERT = "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)"


def fresh(tmp_path: Path) -> sqlite3.Connection:
    db = tmp_path / "audit.db"
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("CREATE TABLE audit_head (id INTEGER PRIMARY KEY, size INTEGER, last_hash TEXT)")
    conn.execute("CREATE TABLE audit_nodes (level INTEGER, idx INTEGER, hash BLOB, PRIMARY KEY (level, idx))")
    conn.execute("INSERT INTO audit_head VALUES (1, 0, 'g')")
    return conn


def settings_of(conn: sqlite3.Connection) -> tuple[int, int]:
    return conn.execute("PRAGMA busy_timeout").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0]


async def test_a_busy_database_answers_at_once_and_the_settings_stay(tmp_path: Path) -> None:
    conn = fresh(tmp_path)
    before = settings_of(conn)
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert write_now(conn, (0, "g"), [(INSERT, [(1, 0, b"x")])], (1, "h")) is None
    assert time.monotonic() - started < 1.0, "it waited for the lock (busy_timeout is 5 s)"
    assert settings_of(conn) == before == (5000, 2)  # 2 = FULL
    other.execute("ROLLBACK")
    assert write_now(conn, (0, "g"), [(INSERT, [(1, 0, b"x")])], (1, "h")) is True
    await WalSync(str(tmp_path / "audit.db"))()
    assert settings_of(conn) == before
    assert other.execute("SELECT size, last_hash FROM audit_head").fetchone() == (1, "h")
    # A moved head writes nothing, on either path.
    assert write_now(conn, (0, "g"), [(INSERT, [(1, 1, b"y")])], (1, "i")) is False
    assert write_batch(conn, (0, "g"), [(INSERT, [(1, 1, b"y")])], (1, "i")) is False
    assert other.execute("SELECT count(*) FROM audit_nodes").fetchone() == (1,)


async def test_a_failed_statement_rolls_back_and_restores_the_settings(tmp_path: Path) -> None:
    conn = fresh(tmp_path)
    before = settings_of(conn)
    duplicate = [(INSERT, [(1, 0, b"x"), (1, 0, b"x")])]
    with pytest.raises(sqlite3.IntegrityError):
        write_now(conn, (0, "g"), duplicate, (2, "h"))
    assert not conn.in_transaction and settings_of(conn) == before
    assert conn.execute("SELECT size FROM audit_head").fetchone() == (0,)


async def test_the_writer_waits_out_a_short_lock_on_the_driver_thread(tmp_path: Path) -> None:
    """A lock another process holds for a moment: the batch goes to the driver's thread, which
    waits for it, and the entries are recorded once, in order."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    try:
        assert writer.writes_on_loop
        assert await writer.append(entry(0)) == 0
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            release.wait(5)
            other.execute("ROLLBACK")
            other.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 5)
        pending = [asyncio.ensure_future(writer.append(entry(n))) for n in range(1, 4)]
        await asyncio.sleep(0.3)
        assert not any(p.done() for p in pending), "an entry was acknowledged while the database was locked"
        release.set()
        assert sorted(await asyncio.gather(*pending)) == [1, 2, 3]
        await asyncio.to_thread(holder.join)
    finally:
        await writer.close()
        await engine.dispose()
    await assert_log_verifies(url, 4)


async def test_a_memory_database_is_written_on_the_driver_thread() -> None:
    engine = make_engine("sqlite:///:memory:")
    writer = AuditWriter(engine)
    await writer.start()
    try:
        assert not writer.writes_on_loop
        assert [await writer.append(entry(n)) for n in range(3)] == [0, 1, 2]
    finally:
        await writer.close()
        await engine.dispose()


class ScriptedDisk:
    """An fsync that records the thread it ran on and takes the scripted time (a fake timer)."""

    def __init__(self, durations: list[float]) -> None:
        self.durations = durations
        self.now = 0.0
        self.threads: list[str] = []

    def timer(self) -> float:
        return self.now

    def fsync(self, path: str) -> None:
        assert path.endswith("audit.db-wal")
        self.threads.append(threading.current_thread().name)
        self.now += self.durations[len(self.threads) - 1]


async def test_syncs_stay_on_the_loop_while_quick_and_move_to_a_thread_while_slow(tmp_path: Path) -> None:
    # Quick syncs (0.3 ms), then a slow disk (20 ms each), then quick again.
    disk = ScriptedDisk([0.0003] * 3 + [0.020] * 6 + [0.0003] * 60)
    sync = WalSync(str(tmp_path / "audit.db"), slow=0.002, timer=disk.timer, fsync=disk.fsync)
    loop_thread = threading.current_thread().name
    for _ in disk.durations:
        await sync()
    on_loop = [name == loop_thread for name in disk.threads]
    assert on_loop[:4] == [True] * 4  # the first slow sync is met on the loop: nothing said it would be slow
    assert not any(on_loop[4:9]), "a sync went back to the loop while the disk was slow"
    assert on_loop[-10:] == [True] * 10, "syncs never came back to the loop once the disk was quick"
    assert sync.inline


async def test_syncs_in_threads_probe_the_disk_on_the_loop_now_and_then(tmp_path: Path) -> None:
    """A thread's timing includes its wait for the GIL: a busy loop could keep syncs in threads
    after the disk is quick again, so one sync in PROBE_EVERY measures the disk on the loop."""
    every = WalSync.PROBE_EVERY
    disk = ScriptedDisk([0.020] * (2 * every + 10))  # slow throughout
    sync = WalSync(str(tmp_path / "audit.db"), slow=0.002, timer=disk.timer, fsync=disk.fsync)
    loop_thread = threading.current_thread().name
    for _ in disk.durations:
        await sync()
    probes = [i for i, name in enumerate(disk.threads) if name == loop_thread]
    assert probes == [0, every + 1, 2 * every + 2]  # the first sync, then one in every PROBE_EVERY + 1


async def test_slow_syncs_in_threads_do_not_keep_syncs_there_once_the_loop_finds_the_disk_quick(tmp_path: Path) -> None:
    """One stall on the loop, then syncs that look slow only from a thread (their GIL wait under
    load): the next probe on the loop is quick, and the syncs come back at once."""
    every = WalSync.PROBE_EVERY
    disk = ScriptedDisk([0.020] + [0.003] * every + [0.0003] * 5)
    sync = WalSync(str(tmp_path / "audit.db"), slow=0.002, timer=disk.timer, fsync=disk.fsync)
    loop_thread = threading.current_thread().name
    for _ in disk.durations:
        await sync()
    on_loop = [name == loop_thread for name in disk.threads]
    assert on_loop[0] and not any(on_loop[1:every + 1])
    assert on_loop[every + 1:] == [True] * 5, "a quick probe on the loop did not bring the syncs back"
    assert sync.inline


async def test_a_failed_sync_raises_on_either_path(tmp_path: Path) -> None:
    def refuse(path: str) -> None:
        raise OSError(5, "Input/output error")

    quick = WalSync(str(tmp_path / "audit.db"), fsync=refuse)
    with pytest.raises(OSError):
        await quick()
    slow = WalSync(str(tmp_path / "audit.db"), fsync=refuse)
    slow.typical = 1.0
    assert not slow.inline
    with pytest.raises(OSError):
        await slow()
