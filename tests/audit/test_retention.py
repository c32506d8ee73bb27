"""Retention: old payloads may be pruned (audited first) while leaf hashes, the chain and every proof
stay verifiable; never within six months; an unaudited removal is caught."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.schema import CreateTable

from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.reader import AuditReader
from audit.retention import MIN_RETENTION_DAYS, check_retention_days, prune
from audit.search import parse_search
from audit.verify import verify_database
from audit.writer import AuditWriter
from credcore.clock import FixedClock
from credcore.db import make_engine
from credcore.errors import ConfigError, InvalidParameter, VerificationError
from gateway.cli import main
from gateway.config import load_settings
from tests.audit.support import checkpoint_fields, independent_verify_inclusion

ORIGIN = "credgate.test/audit"
NOW = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
CODE = "91110108551385082Q"


def old_entry(n: int) -> dict[str, object]:
    when = NOW - dt.timedelta(days=1500 - 30 * n)  # from about four years ago up to now
    return {"kind": "access", "time": when.isoformat().replace("+00:00", "Z"), "client_id": f"op-{n % 3}",
            "uscc": [CODE], "decision": "allow", "status": 200, "n": n,
            "records": [{"id": f"R{n}", "sha256": f"{n:064x}"}]}


async def build(url: str) -> None:
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    signer = await load_or_create_signer(engine, ORIGIN)
    for n in range(50):
        await writer.append(old_entry(n))
    await Checkpointer(engine, signer, origin=ORIGIN).sign_latest()
    await writer.close()
    await engine.dispose()


@pytest.fixture
async def url(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    await build(db)
    return db


def test_retention_under_six_months_is_a_config_error() -> None:
    """A retention period under 184 days is refused, in the settings too, naming the setting."""
    assert check_retention_days(MIN_RETENTION_DAYS) == 184
    with pytest.raises(ConfigError, match="'audit.retention_days' must be at least 184"):
        check_retention_days(183)
    with pytest.raises(ConfigError, match="audit.retention_days"):
        load_settings(environ={"CREDGATE_AUDIT_RETENTION_DAYS": "90", "CREDGATE_UPSTREAM_URL": "http://127.0.0.1:1"})


async def test_pruning_is_audited_and_the_log_still_verifies(url: str) -> None:
    """Entries older than three years lose their payload; the event is in the log; verify passes;
    proofs for pruned entries still verify; search no longer finds their company."""
    engine = make_engine(url)
    clock = FixedClock(NOW)
    try:
        result = await prune(engine, NOW - dt.timedelta(days=1096), clock=clock, actor="tester")
        reader = AuditReader(engine)
        rows = await reader.rows(0, 60)
        pruned = [i for i, leaf, _ in rows if leaf is None]
        assert pruned == list(range(result.up_to)) and result.pruned == result.up_to == 14
        event = rows[result.event_index][1]
        assert event is not None and b'"kind":"retention_prune"' in event and b'"up_to":14' in event
        signer = await load_or_create_signer(engine, ORIGIN)
        note = (await Checkpointer(engine, signer, origin=ORIGIN).sign_latest()).note
        _, size, root = checkpoint_fields(note)
        for i, _, leaf_hash in rows[:3]:
            assert independent_verify_inclusion(leaf_hash, i, size, await reader.inclusion(i, size), root)
        hits, _ = await reader.search(parse_search({"uscc": CODE, "limit": "1000"}))
        assert [i for i, _ in hits][0] == 14
    finally:
        await engine.dispose()
    report = await verify_database(url)
    assert "51 entries (14 pruned)" in report


async def test_pruning_drops_every_company_row_of_the_pruned_entries_and_no_other(url: str) -> None:
    """By each row's whole key, read from the leaf; a leaf that cannot be read is found by a scan."""
    engine = make_engine(url)
    try:
        writer = AuditWriter(engine)  # an old entry about two companies
        await writer.start()
        assert await writer.append({**old_entry(0), "uscc": [CODE, "91350100M000100Y43"]}) == 50
        await writer.close()
        async with engine.begin() as conn:  # and one whose leaf cannot be read
            await conn.execute(text("UPDATE audit_entries SET leaf = :junk WHERE idx = 5"), {"junk": b"\xff not json"})
        async with engine.connect() as conn:
            before = [r.idx for r in await conn.execute(text("SELECT idx FROM audit_subjects WHERE idx IN (5, 50)"))]
        assert sorted(before) == [5, 50, 50]
        await prune(engine, NOW - dt.timedelta(days=1096), clock=FixedClock(NOW))
        async with engine.connect() as conn:
            left = sorted(r.idx for r in await conn.execute(text("SELECT idx FROM audit_subjects")))
    finally:
        await engine.dispose()
    assert left == list(range(14, 50))


def test_the_company_rows_are_deleted_through_their_key(tmp_path: Path) -> None:
    """Not `WHERE idx IN (...)`, which scans the table (its key starts with the company) per batch."""
    import sqlite3

    from sqlalchemy.dialects import sqlite as sqlite_dialect

    from audit import tables
    from audit.retention import SUBJECT_ROW_DELETE

    conn = sqlite3.connect(tmp_path / "plan.db")
    conn.execute(str(CreateTable(tables.subjects).compile(dialect=sqlite_dialect.dialect())))
    sql = str(SUBJECT_ROW_DELETE.compile(dialect=sqlite_dialect.dialect()))
    plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ("X", 1, 2)))
    assert "SEARCH" in plan and "PRIMARY KEY" in plan and "SCAN" not in plan, plan


async def test_pruning_within_the_retention_period_is_refused(url: str) -> None:
    """A cutoff inside the retention period changes nothing and names --before."""
    engine = make_engine(url)
    try:
        with pytest.raises(InvalidParameter) as exc:
            await prune(engine, NOW - dt.timedelta(days=200), retention_days=365, clock=FixedClock(NOW))
        assert exc.value.parameter == "before"
        assert all(leaf is not None for _, leaf, _ in await AuditReader(engine).rows(0, 60))
        assert await AuditReader(engine).size() == 50
    finally:
        await engine.dispose()


async def test_a_payload_removed_without_an_audited_prune_is_caught(url: str) -> None:
    """Nulling a leaf by hand (no retention event) fails verification at that index."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE audit_entries SET leaf = NULL WHERE idx = 7"))
    finally:
        await engine.dispose()
    with pytest.raises(VerificationError, match="entry 7: its payload was removed") as exc:
        await verify_database(url)
    assert exc.value.index == 7


async def test_a_pruned_entry_whose_hash_was_changed_is_caught(url: str) -> None:
    """The kept hash of a pruned entry is bound by the next entry's prev_hash and by the checkpoints."""
    engine = make_engine(url)
    try:
        await prune(engine, NOW - dt.timedelta(days=1096), clock=FixedClock(NOW))
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE audit_entries SET leaf_hash = :h WHERE idx = 13"), {"h": bytes(32)})
    finally:
        await engine.dispose()
    with pytest.raises(VerificationError) as exc:
        await verify_database(url)
    assert exc.value.index == 14 and "prev_hash" in exc.value.description


def test_prune_command(tmp_path: Path) -> None:
    """`credgate audit prune` refuses a short retention and prunes, reporting the audit entry."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    asyncio.run(build(url))
    runner = CliRunner()
    short = runner.invoke(main, ["audit", "prune", "--db", url, "--before", "2020-01-01", "--retention-days", "30"])
    assert short.exit_code == 2 and "--retention-days" in short.output
    recent = runner.invoke(main, ["audit", "prune", "--db", url, "--before", dt.date.today().isoformat()])
    assert recent.exit_code == 2 and "inside the retention period" in recent.output
    done = runner.invoke(main, ["audit", "prune", "--db", url, "--before", "2022-06-01"])
    assert done.exit_code == 0 and "recorded as audit entry 50" in done.output, done.output
    assert runner.invoke(main, ["audit", "verify", "--db", url]).exit_code == 0
