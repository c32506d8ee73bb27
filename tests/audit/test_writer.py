"""The group-commit audit writer: consecutive indices, batching, several writers on one chain,
and a log that verifies after any appends (SQLite and the real PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from audit import tables
from audit.chain import verify_chain
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.rfc9162 import root_from_hashes
from audit.verify import verify_database
from audit.writer import AuditWriter, cut_at_prev_hash, load_frontier
from credcore.canonical import canonical_json
from credcore.clock import SystemClock
from credcore.db import make_engine
from credcore.errors import AuditUnavailable
from gateway.release import AccessRecord, release

ORIGIN = "credgate.test/audit"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


def entry(n: int, **extra: Any) -> dict[str, Any]:
    when = (T0 + dt.timedelta(microseconds=n)).isoformat().replace("+00:00", "Z")
    return {"kind": "access", "time": when, "client_id": f"op-{n % 3}", "uscc": [], "decision": "allow",
            "status": 200, "n": n, **extra}


@asynccontextmanager
async def running_writer(url: str) -> AsyncIterator[AuditWriter]:
    """A started writer on its own engine; closed (queued appends drained) and disposed after."""
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.close()
        await engine.dispose()


async def leaves_of(url: str) -> list[bytes]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            query = select(tables.entries.c.idx, tables.entries.c.leaf).order_by(tables.entries.c.idx)
            rows = await conn.execute(query)
            result = [(int(r.idx), bytes(r.leaf)) for r in rows]
    finally:
        await engine.dispose()
    assert [i for i, _ in result] == list(range(len(result)))
    return [leaf for _, leaf in result]


async def assert_log_verifies(url: str, size: int) -> None:
    """Chain, stored tree nodes and a freshly signed checkpoint all agree on `size` entries."""
    leaves = await leaves_of(url)
    assert len(leaves) == size
    chain = verify_chain(leaves)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            stored_root = (await load_frontier(conn, size)).root()
        assert stored_root == root_from_hashes(chain.leaf_hashes)
        signer = await load_or_create_signer(engine, ORIGIN)
        await Checkpointer(engine, signer, origin=ORIGIN).sign_latest()
    finally:
        await engine.dispose()
    assert f"{size} entries" in await verify_database(url, [])


async def test_concurrent_appends_get_consecutive_indices_in_fewer_batches(tmp_path: Path) -> None:
    """N concurrent appends get the distinct indices 0..N-1, committed in fewer than N batches."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    async with running_writer(url) as writer:
        indices = await asyncio.gather(*(writer.append(entry(n)) for n in range(60)))
        assert sorted(indices) == list(range(60))
        assert 1 <= writer.batches < 60
    leaves = await leaves_of(url)
    # Each caller's index points at its own entry.
    for n, index in enumerate(indices):
        assert f'"n":{n},'.encode() in leaves[index]
    await assert_log_verifies(url, 60)


async def test_entry_that_cannot_be_recorded_fails_only_its_caller(tmp_path: Path) -> None:
    """An entry with no time, a NaN or absurd nesting is refused alone; its batch-mates are
    recorded, and the writer goes on."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    bad_time = {k: v for k, v in entry(1).items() if k != "time"}
    nested: dict[str, Any] = {}
    for _ in range(100_000):
        nested = {"n": nested}
    try:
        results = await asyncio.gather(
            writer.append(entry(0)), writer.append(bad_time), writer.append(entry(2, score=math.nan)),
            writer.append(entry(3)), writer.append(entry(5, detail=nested)), return_exceptions=True,
        )
        assert results[0] == 0 and results[3] == 1
        assert all(isinstance(results[i], AuditUnavailable) for i in (1, 2, 4)), results
        assert await writer.append(entry(4)) == 2
    finally:
        await writer.close()
        await engine.dispose()
    await assert_log_verifies(url, 3)


async def test_close_waits_for_queued_appends(tmp_path: Path) -> None:
    """Closing the writer lets every queued append finish durably before it stops."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine, max_batch=4)
    await writer.start()
    pending = [asyncio.ensure_future(writer.append(entry(n))) for n in range(20)]
    await asyncio.sleep(0)
    await writer.close()
    assert sorted(await asyncio.gather(*pending)) == list(range(20))
    with pytest.raises(AuditUnavailable):
        await writer.append(entry(99))
    await engine.dispose()
    await assert_log_verifies(url, 20)


async def two_writers_one_chain(url: str) -> None:
    engines = [make_engine(url), make_engine(url)]
    writers = [AuditWriter(e, max_batch=7) for e in engines]
    for w in writers:
        await w.start()
    try:
        calls = [writers[n % 2].append(entry(n)) for n in range(80)]
        indices = await asyncio.gather(*calls)
        assert sorted(indices) == list(range(80))
    finally:
        for w in writers:
            await w.close()
        for e in engines:
            await e.dispose()
    await assert_log_verifies(url, 80)


async def test_two_writers_on_one_sqlite_file_make_one_chain(tmp_path: Path) -> None:
    """Two writers (two processes' worth of engines) appending at once keep one valid chain."""
    await two_writers_one_chain(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
async def test_two_writers_on_one_postgres_database_make_one_chain(pg_url: str) -> None:
    """The same on PostgreSQL: the head row lock keeps the chain from forking."""
    await two_writers_one_chain(pg_url)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
ENTRY = st.builds(lambda n, extra: {**extra, **entry(n)}, st.integers(0, 10**6),
                  st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("time", "uscc")), JSON, max_size=3))


async def append_batches(batches: list[list[dict[str, Any]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / f'{uuid.uuid4().hex}.db'}"
        engine = make_engine(url)
        writer = AuditWriter(engine)
        await writer.start()
        recorded = 0
        try:
            for batch in batches:
                results = await asyncio.gather(*(writer.append(e) for e in batch), return_exceptions=True)
                ok = [r for r in results if isinstance(r, int)]
                assert all(isinstance(r, int | AuditUnavailable) for r in results), results
                assert sorted(ok) == list(range(recorded, recorded + len(ok)))
                recorded += len(ok)
        finally:
            await writer.close()
            await engine.dispose()
        if recorded:
            await assert_log_verifies(url, recorded)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ENTRY, min_size=1, max_size=6), min_size=1, max_size=4))
def test_log_verifies_after_any_appends(batches: list[list[dict[str, Any]]]) -> None:
    """Whatever entries are appended, in whatever batches, what was recorded verifies."""
    asyncio.run(append_batches(batches))


SPLICE_KEYS = st.sampled_from(["a", "kind", "prev_hash", "prev_hasg", "prev_hasi", "q", "z", "\u00e9"])
SPLICE_SCALARS = (st.none() | st.integers(-5, 5) | st.text(max_size=5) | st.just("0" * 64)
                  | st.just('"prev_hash":"' + "0" * 64 + '"') | st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SPLICE_KEYS, st.recursive(SPLICE_SCALARS, lambda inner: st.dictionaries(SPLICE_KEYS, inner,
                                                                                                max_size=3),
                                                  max_leaves=6), max_size=6))
def test_prev_hash_splice_is_the_canonical_encoding(entry: dict[str, Any]) -> None:
    """head + prev + tail is the canonical JSON of the whole entry, whatever the other members hold:
    nested prev_hash members with the placeholder value, the placeholder inside strings, floats."""
    prev = "ab" * 32
    body = {k: v for k, v in entry.items() if k != "prev_hash"}
    head, tail = cut_at_prev_hash(body)
    assert head + prev.encode() + tail == canonical_json({**body, "prev_hash": prev})
    assert cut_at_prev_hash(entry) == (head, tail)  # a prev_hash the caller put in is replaced


async def test_stored_nodes_are_read_by_index_never_by_a_scan(tmp_path: Path) -> None:
    """The checkpointer reads a few dozen nodes every tick: each read must seek, not scan the tree."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    try:
        await asyncio.gather(*(writer.append(entry(n)) for n in range(37)))
    finally:
        await writer.close()
    plans: list[str] = []
    try:
        async with engine.connect() as conn:
            statements: list[tuple[str, Any]] = []

            def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
                statements.append((statement, parameters))

            event.listen(conn.sync_connection, "before_cursor_execute", capture)
            await load_frontier(conn, 37)
            event.remove(conn.sync_connection, "before_cursor_execute", capture)
            for statement, parameters in statements:
                rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans.append(" | ".join(str(r[-1]) for r in rows))
    finally:
        await engine.dispose()
    assert plans and not any("SCAN" in plan for plan in plans), plans


async def test_a_release_cancelled_while_waiting_still_records_its_entry(tmp_path: Path) -> None:
    """aiohttp may cancel a handler whose client hung up: the wait ends, the entry does not."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    async with running_writer(url) as writer:
        record = AccessRecord(method="GET", path="/v1/entities/x", query="")
        handler = asyncio.ensure_future(release(writer, SystemClock(), record, status=200, body=b"{}"))
        await asyncio.sleep(0)  # the handler runs up to its wait: the entry is queued
        handler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handler
        assert await writer.append(entry(1)) == 1, "the cancelled request's entry did not take index 0"
    leaves = await leaves_of(url)
    assert b'"path":"/v1/entities/x"' in leaves[0]
    await assert_log_verifies(url, 2)
