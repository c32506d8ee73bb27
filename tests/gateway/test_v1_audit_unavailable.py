"""No audit, no data: when the audit store cannot write, /v1 answers 503 audit_unavailable with
no data and no Audit-Entry, and once the store recovers the log still verifies.

The failures are real SQLite failures of the gateway's own database file: a file the kernel
refuses to write, a write lock held by another connection, and a database that can grow no
further (SQLite's SQLITE_FULL, the error a full disk gives).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from audit.verify import verify_database
from tests.conftest import wait_for

QUICK_LOCK = {"busy_timeout": 0.2}


async def gateway_on(make_gateway: Any, tmp_path: Path) -> tuple[Any, Path, str]:
    db = tmp_path / "audit-outage.db"
    harness = await make_gateway(db_url=f"sqlite:///{db}", database=QUICK_LOCK)
    return harness, db, await harness.token("op")


async def assert_nothing_released(harness: Any, path: str, token: str | None) -> None:
    resp = await harness.get(path, token)
    body = await resp.json()
    assert resp.status == 503, body
    assert body["error"] == "audit_unavailable" and body["error_description"], body
    assert set(body) == {"error", "error_description"}
    assert "Audit-Entry" not in resp.headers


async def assert_recovered_and_verifies(harness: Any, db: Path, path: str, token: str) -> None:
    resp = await harness.get(path, token)
    assert resp.status == 200, await resp.text()
    index = int(resp.headers["Audit-Entry"])

    async def covered() -> bool:
        note = await (await harness.client.get("/audit/checkpoint")).text()
        return int(note.split("\n")[1]) > index

    assert await wait_for(covered, timeout=5.0)
    report = await verify_database(f"sqlite:///{db}", [])
    assert report.startswith("audit log verified")


@contextlib.asynccontextmanager
async def write_lock_held(db: Path) -> AsyncIterator[None]:
    """Another connection holds the database's write lock (BEGIN EXCLUSIVE) for the block. It is
    taken off the event loop, which must keep serving the gateway while the lock is awaited."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(other.execute, "BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
    finally:
        other.close()


def kernel_refuses_writes(files: list[Path]) -> contextlib.AbstractContextManager[None]:
    """Make `files` unwritable for this process: immutable as root (where chmod is ignored),
    read-only mode otherwise."""

    @contextlib.contextmanager
    def manage() -> Iterator[None]:
        if os.geteuid() == 0:
            chattr = shutil.which("chattr")
            if chattr is None:
                pytest.skip("running as root without chattr: no way to make a file unwritable")
            done = subprocess.run([chattr, "+i", *map(str, files)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"chattr +i is not permitted here: {done.stderr.strip()}")
            try:
                yield
            finally:
                subprocess.run([chattr, "-i", *map(str, files)], check=True)
        else:
            modes = {f: f.stat().st_mode for f in files}
            for f in files:
                f.chmod(stat.S_IRUSR | stat.S_IRGRP)
            try:
                yield
            finally:
                for f, mode in modes.items():
                    f.chmod(mode)

    return manage()


async def test_read_only_database_file_releases_nothing(make_gateway: Any, tmp_path: Path, sample_code: str) -> None:
    """A database file the kernel will not write answers 503 with no data, then recovers."""
    harness, db, token = await gateway_on(make_gateway, tmp_path)
    path = f"/v1/entities/{sample_code}/penalties"
    assert (await harness.get(path, token)).status == 200
    with kernel_refuses_writes([db, db.with_name(db.name + "-wal")]):
        await harness.gw.engine.dispose()  # new connections, too, find the file read-only
        await assert_nothing_released(harness, path, token)
        await assert_nothing_released(harness, path, token)
    await assert_recovered_and_verifies(harness, db, path, token)


async def test_locked_database_releases_nothing(make_gateway: Any, tmp_path: Path, sample_code: str) -> None:
    """A write lock held by another connection past the busy timeout answers 503, denials too."""
    harness, db, token = await gateway_on(make_gateway, tmp_path)
    path = f"/v1/entities/{sample_code}/penalties"
    assert (await harness.get(path, token)).status == 200
    async with write_lock_held(db):
        await assert_nothing_released(harness, path, token)
        await assert_nothing_released(harness, path, None)  # a refusal cannot be recorded either
    await assert_recovered_and_verifies(harness, db, path, token)


@contextlib.contextmanager
def database_full(engine: Any) -> Iterator[None]:
    """Every new connection of `engine` may not grow the file: `PRAGMA max_page_count` set to
    the current size, so SQLite fails writes with SQLITE_FULL exactly as on a full disk."""
    full = True

    def cap(dbapi_connection: Any, _record: Any) -> None:
        if full:  # the listener stays (removing it races the driver's threads); it just stops
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA max_page_count = 1")  # clamped to the current page count
            cursor.close()

    event.listen(engine.sync_engine, "connect", cap)
    try:
        yield
    finally:
        full = False


async def test_full_disk_releases_nothing(make_gateway: Any, tmp_path: Path, caplog: Any) -> None:
    """SQLITE_FULL on the audit append answers 503 with no data; after space returns, it verifies."""
    harness, db, token = await gateway_on(make_gateway, tmp_path)
    # A whole disclosure page: its entry lists every record's digest, so it needs new pages.
    path = "/v1/disclosures?limit=1000"
    resp = await harness.get(path, token)
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["records"]) > 100
    with database_full(harness.gw.engine):
        await harness.gw.engine.dispose()
        free = sqlite3.connect(db).execute("PRAGMA freelist_count").fetchone()[0]
        assert free < 5, "free pages would absorb the append"
        await assert_nothing_released(harness, path, token)
    assert "database or disk is full" in caplog.text
    await harness.gw.engine.dispose()
    await assert_recovered_and_verifies(harness, db, path, token)


async def test_outage_entries_never_appear_in_the_log(make_gateway: Any, tmp_path: Path, sample_code: str) -> None:
    """Requests refused during an outage leave no entry: the log holds only what was answered."""
    harness, db, token = await gateway_on(make_gateway, tmp_path)
    path = f"/v1/entities/{sample_code}/penalties"
    first = int((await harness.get(path, token)).headers["Audit-Entry"])
    async with write_lock_held(db):
        for _ in range(3):
            await assert_nothing_released(harness, path, token)
    second = int((await harness.get(path, token)).headers["Audit-Entry"])
    assert second == first + 1
    auditor = await harness.token("auditor")
    resp = await harness.client.get("/audit/entries", params={"start": str(first), "end": str(second + 1)},
                                    headers={"Authorization": f"Bearer {auditor}"})
    leaves = [base64.b64decode(item["leaf"]) for item in (await resp.json())["entries"]]
    assert len(leaves) == 2 and all(b'"status":200' in leaf for leaf in leaves)
