"""The fsync helper process (audit/fsync_helper.py): it syncs on request, reports a refusal as
an OSError, and once it cannot answer (dead, or a sync abandoned half-way) it is gone for good,
and the audit writer goes on syncing in its own process without losing or releasing early."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from audit.fsync_helper import FsyncHelper, HelperGone
from tests.audit.test_writer import assert_log_verifies, entry, running_writer


def started(path: Path, *, present: bool = True) -> FsyncHelper:
    """A helper for `path`, which holds some bytes unless `present` is False."""
    if present:
        path.write_bytes(b"frames")
    helper = FsyncHelper.start(str(path))
    assert helper is not None, "no helper process could be started"
    return helper


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_it_syncs_and_ends_when_closed(tmp_path: Path) -> None:
    helper = started(tmp_path / "audit.db-wal")
    for _ in range(3):
        await helper.sync()
    assert running(helper.pid)
    helper.close()
    assert not running(helper.pid)  # reaped, not a zombie


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
async def test_the_helper_yields_to_the_loop_it_serves(tmp_path: Path) -> None:
    """SCHED_BATCH: woken by the loop's byte, it waits for the loop to yield instead of
    preempting it on a shared core."""
    helper = started(tmp_path / "audit.db-wal")
    try:
        await helper.sync()  # it has set itself up once it answers
        assert os.sched_getscheduler(helper.pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(os.getpid()) == os.SCHED_OTHER  # the caller is left alone
    finally:
        helper.close()


async def test_a_refused_sync_is_an_os_error_and_the_helper_stays(tmp_path: Path) -> None:
    wal = tmp_path / "audit.db-wal"
    helper = started(wal, present=False)  # the open fails in the helper
    try:
        with pytest.raises(OSError):
            await helper.sync()
        wal.write_bytes(b"frames")
        await helper.sync()  # still in step: the refusal was this sync's answer
    finally:
        helper.close()


async def test_a_killed_helper_is_gone_never_an_answer(tmp_path: Path) -> None:
    helper = started(tmp_path / "audit.db-wal")
    await helper.sync()
    os.kill(helper.pid, signal.SIGKILL)
    with pytest.raises(HelperGone):
        await helper.sync()
    with pytest.raises(HelperGone):
        await helper.sync()


async def test_a_sync_abandoned_half_way_retires_the_helper(tmp_path: Path) -> None:
    """Its late answer must not be read as the next sync's, which would release a batch early."""
    helper = started(tmp_path / "audit.db-wal")
    pending = asyncio.create_task(helper.sync())
    await asyncio.sleep(0)  # asked, not yet answered
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert helper.closed and not running(helper.pid)
    with pytest.raises(HelperGone):
        await helper.sync()


async def test_ctrl_c_in_a_terminal_leaves_the_helper_to_sync_the_last_batch(tmp_path: Path) -> None:
    helper = started(tmp_path / "audit.db-wal")
    try:
        await helper.sync()  # it is up, with its handlers set
        os.kill(helper.pid, signal.SIGINT)
        await asyncio.sleep(0.05)
        await helper.sync()
    finally:
        helper.close()


async def test_the_writer_syncs_through_the_helper_and_goes_on_without_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    async with running_writer(url) as writer:
        sync = writer._wal_sync
        assert sync is not None and sync.helper is not None
        assert [await writer.append(entry(n)) for n in range(3)] == [0, 1, 2]
        os.kill(sync.helper.pid, signal.SIGKILL)
        await asyncio.sleep(0.05)
        # The batch that finds the helper dead is synced in this process: recorded, released.
        assert list(await asyncio.gather(*(writer.append(entry(n)) for n in range(3, 8)))) == [3, 4, 5, 6, 7]
        assert sync.helper is None
        assert await writer.append(entry(8)) == 8
    await assert_log_verifies(url, 9)


async def test_closing_the_writer_ends_its_helper(tmp_path: Path) -> None:
    async with running_writer(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}") as writer:
        assert writer._wal_sync is not None and writer._wal_sync.helper is not None
        pid = writer._wal_sync.helper.pid
        await writer.append(entry(0))
    assert not running(pid)
