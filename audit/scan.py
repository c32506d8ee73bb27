"""Reading and checking ranges of a stored log, in worker processes or in this one.

A worker reads its own range straight from the database (the stdlib sqlite3 module, or asyncpg
for PostgreSQL), so no leaf crosses a process boundary: only the small `ChunkReport` comes back.
The checks are those of audit/logcheck.py.

Workers are plain `python -m audit.scan` processes that read tasks from stdin and write reports
to stdout, one length-prefixed pickle each. Not multiprocessing: its children import the parent's
`__main__` (the whole gateway CLI, or a benchmark) before doing anything, about a second of CPU
each; this module imports only what checking needs.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import struct
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO
from urllib.parse import quote

from audit.logcheck import ChunkReport, check_chunk_fast, normal_row

QUERY = "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE idx >= {lo} AND idx < {hi} ORDER BY idx"
Source = tuple[str, str]  # ("sqlite", file path) or ("postgresql", asyncpg DSN)
Task = tuple[int, int, list[int], int]  # lo, hi, checkpoint sizes in (lo, hi], log size
_FRAME = struct.Struct(">I")
# Reading through a memory map skips a copy of every page (SQLite caps the map at about 2 GB).
_MMAP = 1 << 31


def _sqlite_rows(path: str, lo: int, hi: int) -> list[Any]:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
    try:
        conn.execute(f"PRAGMA mmap_size={_MMAP}")
        return conn.execute(QUERY.format(lo="?", hi="?"), (lo, hi)).fetchall()
    finally:
        conn.close()


async def _pg_rows(dsn: str, lo: int, hi: int) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(QUERY.format(lo="$1", hi="$2"), lo, hi)
        return [normal_row(r) for r in records]
    finally:
        await conn.close()


def read_rows(source: Source, lo: int, hi: int) -> list[Any]:
    """Rows (index, leaf or None, stored leaf hash) of [lo, hi) in index order, as the driver
    returns them (blocking)."""
    kind, location = source
    if kind == "sqlite":
        return _sqlite_rows(location, lo, hi)
    return asyncio.run(_pg_rows(location, lo, hi))


def check_range(source: Source, lo: int, hi: int, sizes: Sequence[int], end: int) -> ChunkReport:
    """Read [lo-2, hi+1) and check [lo, hi) (the worker's job; `end` bounds the lookahead)."""
    rows = read_rows(source, max(0, lo - 2), min(hi + 1, end + 1))
    return check_chunk_fast(rows, lo, hi, sizes, end=end)


def default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


# --------------------------------------------------------------------------- worker processes

class WorkerFailed(Exception):
    """A worker process died or could not be started: check in this process instead."""


def _frame(value: object) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(body)) + body


def _read_frame(stream: BinaryIO) -> Any:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        raise EOFError
    (size,) = _FRAME.unpack(header)
    return pickle.loads(stream.read(size))


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The worker loop: (source, task) in, ChunkReport (or the exception raised) out, until EOF."""
    while True:
        try:
            source, (lo, hi, sizes, end) = _read_frame(requests)
        except EOFError:
            return
        try:
            reply: object = check_range(source, lo, hi, sizes, end)
        except Exception as exc:  # the parent raises it
            reply = exc if _picklable(exc) else RuntimeError(repr(exc))
        try:
            replies.write(_frame(reply))
            replies.flush()
        except BrokenPipeError:  # the parent is gone
            return


def _picklable(value: object) -> bool:
    """Whether an exception survives the trip to the parent; one that does not is sent as a
    RuntimeError with its repr, so the parent still fails the check (never passes it)."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:  # any pickling failure means "send the repr instead"
        return False
    return True


class Worker:
    """One `python -m audit.scan` process, driven from the event loop; tasks are answered in order."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> Worker:
        if not sys.executable:
            raise WorkerFailed("no Python executable to start workers with")
        # The parent's import path, so the worker imports this same code (a checkout or an install),
        # and -P: not an `audit` package that happens to be in the current directory.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "audit.scan", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env=env)
        except OSError as exc:
            raise WorkerFailed(str(exc)) from exc
        return cls(proc)

    async def send(self, source: Source, task: Task) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(_frame((source, task)))
            await self.proc.stdin.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            raise WorkerFailed(f"worker {self.proc.pid} exited") from exc

    async def receive(self) -> ChunkReport:
        assert self.proc.stdout is not None
        try:
            (size,) = _FRAME.unpack(await self.proc.stdout.readexactly(_FRAME.size))
            reply = pickle.loads(await self.proc.stdout.readexactly(size))
        except asyncio.IncompleteReadError as exc:
            raise WorkerFailed(f"worker {self.proc.pid} exited") from exc
        if isinstance(reply, BaseException):
            raise reply
        if not isinstance(reply, ChunkReport):
            raise WorkerFailed(f"worker {self.proc.pid} answered {type(reply).__name__}")
        return reply

    async def close(self) -> None:
        """End the worker (EOF on its stdin) and reap it, so its CPU time is accounted to us."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes our stdin
    serve(sys.stdin.buffer, sys.stdout.buffer)
