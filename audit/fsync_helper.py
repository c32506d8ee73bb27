"""A child process that fsyncs the audit database's WAL when asked, so that the event loop
neither blocks on the disk nor shares its GIL with a thread that waited on it.

Why a process: every audit batch is released only after an fsync of the WAL
(audit/sqlite_batch.py, rule 2), and on the virtual disks here one takes 0.5-1 ms. On the loop,
every request waits that long and the core idles while nothing else is ready (4% of it in the
gateway benchmark). In a thread, the worker that returns from fsync takes the GIL back from the
loop at the loop's next system call, and the two hand it to and fro. A process shares nothing:
the loop writes one byte to a pipe and carries on (requests keep arriving, and join the next
batch), and a reader callback hears one byte back once the WAL is on disk.

Scheduling: the helper runs as SCHED_BATCH (Linux), which any process may ask for itself. A
normal process woken by the loop's byte preempts the loop on a shared core, costing both their
warm caches for a few microseconds of work; a batch process waits for the loop to yield or for the
next tick. Measured with the servers of bench/bench_gateway.py on one core: the gateway was
preempted 0.72 times per request instead of 1.27, and two such gateways against two without,
measured in turn over 8 pairs, served 11% and 13% more requests a second.

Protocol: the loop writes b"s"; the helper opens the WAL afresh (SQLite may have replaced the
file), fsyncs it and answers b"k", or b"e" if the disk refused. One sync is in flight at a time
(the writer awaits each), and a sync abandoned half-way (cancelled) retires the helper: its late
answer must never be taken for the next sync's. Ctrl-C in a terminal reaches the whole process
group; the helper ignores it and exits when the pipe closes, so the gateway's last batch can
still be synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)

_CHILD = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:  # woken by the loop's byte, the helper must not preempt the loop (see "Scheduling")
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
except (AttributeError, OSError):
    pass
path = sys.argv[1]
while True:
    asked = os.read(0, 64)
    if not asked:
        break
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        answer = b"k"
    except OSError:
        answer = b"e"
    os.write(1, answer * len(asked))
"""


class HelperGone(Exception):
    """The helper cannot sync any more (it died, or a sync was abandoned); nothing was promised."""


class FsyncHelper:
    def __init__(self, proc: subprocess.Popen[bytes], to_child: int, from_child: int) -> None:
        self._proc = proc
        self._to = to_child
        self._from = from_child
        self.closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @classmethod
    def start(cls, path: str) -> FsyncHelper | None:
        """A helper that syncs the file at `path`, or None where no process can be started."""
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-E", "-c", _CHILD, path],
                stdin=child_in, stdout=child_out, stderr=subprocess.DEVNULL, close_fds=True,
            )
        except OSError as exc:
            log.warning("audit log: no fsync helper (%s); the WAL is synced in this process", exc)
            os.close(to_child)
            os.close(from_child)
            return None
        finally:
            os.close(child_in)
            os.close(child_out)
        os.set_blocking(from_child, False)
        return cls(proc, to_child, from_child)

    async def sync(self) -> None:
        """Return once the file is on disk; OSError if the disk refused, HelperGone if the
        helper cannot answer."""
        if self.closed:
            raise HelperGone()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(self._from, 64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not answer.done():
                answer.set_result(data)

        try:
            loop.add_reader(self._from, readable)
        except NotImplementedError as exc:  # an event loop without pipes in its selector
            self.close()
            raise HelperGone() from exc
        try:
            os.write(self._to, b"s")
            data = await answer
        except OSError as exc:  # EPIPE: the helper died
            self.close()
            raise HelperGone() from exc
        except BaseException:  # cancelled half-way: its answer may still come
            self.close()
            raise
        finally:
            if not self.closed:
                loop.remove_reader(self._from)
        if data == b"k":
            return
        if data == b"e":
            raise OSError(errno.EIO, "the disk refused to sync the audit log's WAL")
        self.close()
        raise HelperGone()  # end of file: it died

    def close(self) -> None:
        """Stop the helper (closing its pipe ends it) and reap it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._from)
        os.close(self._to)
        os.close(self._from)
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
