"""The checkpointer: signs every N entries or T seconds, never signs a tree inconsistent with the last
stored checkpoint, and rotates keys (old and new sign together, then the old retires)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.keys import finish_rotation, load_keys, start_rotation
from audit.note import NoteSigner, NoteVerifier, verify_note
from audit.verify import verify_database
from audit.writer import AuditWriter
from credcore.clock import FixedClock
from credcore.db import make_engine
from credcore.errors import ConfigError, VerificationError
from gateway.cli import main
from tests.audit.support import entry
from tests.conftest import wait_for

ORIGIN = "credgate.test/audit"


@dataclass
class Log:
    url: str
    engine: AsyncEngine
    writer: AuditWriter
    signer: NoteSigner
    clock: FixedClock

    async def append(self, n: int, start: int = 0) -> None:
        await asyncio.gather(*(self.writer.append(entry(start + i)) for i in range(n)))

    async def stored(self) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(tables.checkpoints.c.size, tables.checkpoints.c.note)
                                      .order_by(tables.checkpoints.c.size))
            return [(int(r.size), str(r.note)) for r in rows]


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    clock = FixedClock("2026-03-02T01:00:00+00:00")
    signer = await load_or_create_signer(engine, ORIGIN, clock)
    yield Log(url, engine, writer, signer, clock)
    await writer.close()
    await engine.dispose()


async def test_signs_as_soon_as_n_entries_wait(log: Log) -> None:
    """Between two signings (at most one per half interval) N waiting entries still get one at once."""
    cp = Checkpointer(log.engine, log.signer, origin=ORIGIN, interval=30.0, every=10, clock=log.clock)
    log.writer.on_head(cp.poke)
    await cp.start()
    try:
        await log.append(4)

        async def signed(size: int) -> bool:
            return any(s >= size for s, _ in await log.stored())

        assert await wait_for(lambda: signed(4), 2.0)  # the first entries after a quiet time: at once
        await log.append(4, 4)
        await asyncio.sleep(0.3)
        assert not await signed(8), "fewer than N entries wait for the interval"
        await log.append(10, 8)
        assert await wait_for(lambda: signed(18), 2.0)
    finally:
        await cp.close()


async def test_signs_within_the_interval(log: Log) -> None:
    """With no count rule, entries get a checkpoint within the interval T."""
    cp = Checkpointer(log.engine, log.signer, origin=ORIGIN, interval=0.2, every=0, clock=log.clock)
    log.writer.on_head(cp.poke)
    await cp.start()
    try:
        await log.append(3)

        async def signed() -> bool:
            return (await cp.latest()).size == 3

        assert await wait_for(signed, 1.0)
        sizes = [s for s, _ in await log.stored()]
        assert sizes[-1] == 3 and sizes == sorted(set(sizes))
    finally:
        await cp.close()


async def test_never_signs_a_tree_inconsistent_with_the_last_checkpoint(log: Log,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A rewritten node under a signed checkpoint, or a log shorter than one, is refused loudly and
    nothing is stored."""
    cp = Checkpointer(log.engine, log.signer, origin=ORIGIN, clock=log.clock)
    await log.append(8)
    await cp.sign_latest()
    async with log.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_nodes SET hash = :h WHERE level = 3 AND idx = 0"), {"h": bytes(32)})
    await log.append(3, 8)
    with caplog.at_level(logging.CRITICAL), pytest.raises(VerificationError, match="not consistent with the "
                                                                                    "checkpoint of size 8"):
        await cp.sign_latest()
    assert "REFUSING to sign a checkpoint of size 11" in caplog.text
    assert [s for s, _ in await log.stored()] == [8]
    assert cp.refusal is not None


async def test_never_signs_a_truncated_log(log: Log) -> None:
    """A log with fewer entries than a signed checkpoint is refused as truncated or rolled back."""
    cp = Checkpointer(log.engine, log.signer, origin=ORIGIN, clock=log.clock)
    await log.append(6)
    await cp.sign_latest()
    async with log.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_entries WHERE idx >= 4"))
        await conn.execute(text("UPDATE audit_head SET size = 4"))
    fresh = Checkpointer(log.engine, log.signer, origin=ORIGIN, clock=log.clock)
    with pytest.raises(VerificationError, match="truncated or rolled back"):
        await fresh.sign_latest()
    assert [s for s, _ in await log.stored()] == [6]


async def test_key_rotation_signs_with_both_then_retires_the_old(log: Log) -> None:
    """During a rotation a checkpoint carries both signatures; retiring the old key needs a checkpoint by
    the new one; the history has validity windows and every stored checkpoint still verifies."""
    engine = log.engine
    cp = Checkpointer(engine, log.signer, origin=ORIGIN, clock=log.clock)
    await log.append(3)
    await cp.sign_latest()
    log.clock.advance(60)
    new = await start_rotation(engine, ORIGIN, log.clock)
    with pytest.raises(ConfigError, match="in progress"):
        await start_rotation(engine, ORIGIN, log.clock)
    with pytest.raises(ConfigError, match="has not signed a stored checkpoint"):
        await finish_rotation(engine, ORIGIN, log.clock)
    log.clock.advance(1)
    await log.append(2, 3)
    both = await cp.sign_latest()
    assert both.note.count("\n\u2014 ") == 2
    for key in (log.signer.verifier, new.verifier):
        assert verify_note(both.note, [key]).names == (ORIGIN,)
    assert cp.verifier_key == new.verifier_key
    log.clock.advance(60)
    retired = await finish_rotation(engine, ORIGIN, log.clock)
    assert retired == [log.signer.verifier_key]
    log.clock.advance(1)
    await log.append(2, 5)
    only_new = await cp.sign_latest()
    assert only_new.note.count("\n\u2014 ") == 1
    verify_note(only_new.note, [new.verifier])
    async with engine.connect() as conn:
        history = await load_keys(conn)
    assert [k.verifier.verifier_key for k in history] == [log.signer.verifier_key, new.verifier_key]
    assert history[0].not_after == log.clock.time() - 1 and history[1].not_after is None
    assert history[0].not_before is not None and history[1].not_before == history[0].not_after - 61
    assert "7 entries" in await verify_database(log.url)


async def test_a_retired_key_signing_later_is_not_trusted(log: Log) -> None:
    """A checkpoint stored after its key retired, signed by that key alone, fails verification."""
    engine = log.engine
    cp = Checkpointer(engine, log.signer, origin=ORIGIN, clock=log.clock)
    await log.append(2)
    await cp.sign_latest()
    await start_rotation(engine, ORIGIN, log.clock)
    await log.append(1, 2)
    log.clock.advance(1)
    await cp.sign_latest()
    log.clock.advance(1)
    await finish_rotation(engine, ORIGIN, log.clock)
    await log.append(1, 3)
    old_only = sign_checkpoint(Checkpoint(ORIGIN, 3, (await cp.latest()).root), [log.signer])
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE audit_checkpoints SET note = :n, ts_us = :t WHERE size = 3"),
                           {"n": old_only, "t": int((log.clock.time() + 5) * 1e6)})
    with pytest.raises(VerificationError, match="checkpoint of size 3: .*no signature by a trusted key"):
        await verify_database(log.url)


def test_rotate_key_command_prints_the_history(tmp_path: Path) -> None:
    """`credgate audit rotate-key` adds a key, refuses to finish early, then retires the old key."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"

    async def setup() -> None:
        engine = make_engine(url)
        writer = AuditWriter(engine)
        await writer.start()
        signer = await load_or_create_signer(engine, ORIGIN)
        await writer.append(entry(0))
        await Checkpointer(engine, signer, origin=ORIGIN).sign_latest()
        await writer.close()
        await engine.dispose()

    async def sign_again() -> None:
        engine = make_engine(url)
        writer = AuditWriter(engine)
        await writer.start()
        signer = await load_or_create_signer(engine, ORIGIN)
        await writer.append(entry(1))
        await Checkpointer(engine, signer, origin=ORIGIN).sign_latest()
        await writer.close()
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(tables.keys))).scalar() == 2
        await engine.dispose()

    asyncio.run(setup())
    runner = CliRunner()
    started = runner.invoke(main, ["audit", "rotate-key", "--db", url, "--origin", ORIGIN])
    assert started.exit_code == 0 and started.output.count('"verifier_key"') == 2, started.output
    early = runner.invoke(main, ["audit", "rotate-key", "--db", url, "--origin", ORIGIN, "--finish"])
    assert early.exit_code == 2 and "has not signed a stored checkpoint" in early.output
    asyncio.run(sign_again())
    done = runner.invoke(main, ["audit", "rotate-key", "--db", url, "--origin", ORIGIN, "--finish"])
    assert done.exit_code == 0 and '"not_after": "20' in done.output, done.output
    assert runner.invoke(main, ["audit", "verify", "--db", url]).exit_code == 0
    assert NoteVerifier.from_key(runner.invoke(main, ["audit", "key", "--db", url, "--origin", ORIGIN]).output)
