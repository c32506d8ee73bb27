"""Quota counters on SQLite, PostgreSQL and Redis: exact under concurrency, fail closed when unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest

from credcore.clock import CST
from credcore.db import make_engine
from credcore.errors import ServiceUnavailable
from policies.counters import LeasedCounter, RedisCounters, SQLCounters
from tests.conftest import REDIS_HINT, need_service
from tests.policies.support import closed_port, fresh_pg_database

EXPIRES = dt.datetime(2099, 1, 1, tzinfo=CST)


class CountingBackend:
    """A backend wrapper that counts round trips."""

    def __init__(self, inner: SQLCounters | RedisCounters) -> None:
        self.inner = inner
        self.reserves = 0

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> tuple[int, int]:
        self.reserves += 1
        return await self.inner.reserve(key, limit, n, expires_at)

    async def give_back(self, key: str, n: int) -> None:
        await self.inner.give_back(key, n)

    async def used(self, key: str) -> int:
        return await self.inner.used(key)

    async def purge(self, now: dt.datetime) -> None:
        await self.inner.purge(now)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[SQLCounters | RedisCounters]:
    """Each counter backend in turn, on the real PostgreSQL and Redis of this machine."""
    if request.param == "redis":
        need_service(6379, "Redis", REDIS_HINT)
        counters = RedisCounters("redis://127.0.0.1:6379/0", prefix=f"credgate:test:{uuid.uuid4().hex}:")
        await counters.start()
        yield counters
        await counters.close()
        return
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(fresh_pg_database())
        else:
            url = f"sqlite:///{tmp_path / 'q.db'}"
        engine = make_engine(url)
        sql = SQLCounters(engine)
        await sql.start()
        yield sql
        await engine.dispose()


async def test_concurrent_burst_admits_exactly_the_limit(backend) -> None:
    """2×Q concurrent single-unit reservations against a limit of Q grant exactly Q."""
    limit = 25
    grants = await asyncio.gather(*(backend.reserve("L:d:burst", limit, 1, EXPIRES) for _ in range(2 * limit)))
    assert sum(granted for granted, _ in grants) == limit
    assert await backend.used("L:d:burst") == limit


async def test_leased_counters_of_two_processes_share_the_limit(backend) -> None:
    """Two LeasedCounters (two processes) over one backend admit exactly a small limit between them."""
    first, second = LeasedCounter(backend), LeasedCounter(backend)
    limit = 30
    results = await asyncio.gather(*(
        (first if n % 2 else second).try_consume("L:d:two", limit, EXPIRES) for n in range(2 * limit)
    ))
    assert sum(results) == limit


async def test_leases_never_exceed_a_large_limit(backend) -> None:
    """With blocks leased, the units granted never pass the limit and the tail is metered one by one."""
    counting = CountingBackend(backend)
    counters = [LeasedCounter(counting, max_lease=10, exact_below=20) for _ in range(3)]
    limit = 407
    admitted = 0
    for n in range(limit + 60):
        admitted += await counters[n % 3].try_consume("L:d:big", limit, EXPIRES)
    assert await backend.used("L:d:big") <= limit
    assert admitted <= limit
    assert admitted >= limit - 3 * 10  # at most one block per process left unused
    assert counting.reserves < limit  # blocks while plenty remain, one by one only in the tail


async def test_requests_that_find_the_lease_empty_wait_for_one_block_fetch(backend) -> None:
    """A burst against an empty lease fetches one block, not one per request (on SQLite each
    fetch queued on the write lock); the tail of a window is still metered one by one."""
    counting = CountingBackend(backend)
    counter = LeasedCounter(counting, max_lease=100, exact_below=10)
    results = await asyncio.gather(*(counter.try_consume("L:d:burst", 100_000, EXPIRES) for _ in range(32)))
    assert all(results) and counting.reserves == 1
    assert await backend.used("L:d:burst") == 100  # one block: 32 used, 68 still leased
    exact = CountingBackend(backend)
    small = LeasedCounter(exact, max_lease=100, exact_below=10)
    results = await asyncio.gather(*(small.try_consume("L:d:small", 5, EXPIRES) for _ in range(8)))
    assert sum(results) == 5 and exact.reserves == 8


async def test_take_leased_uses_only_the_lease_this_process_holds(backend) -> None:
    """The request path's shortcut: no lease, no unit (and no call to the backend); a leased
    block is handed out unit by unit and never past its size."""
    counting = CountingBackend(backend)
    counter = LeasedCounter(counting, max_lease=10, exact_below=10)
    assert not counter.take_leased("L:d:lease")
    assert counting.reserves == 0
    assert await counter.try_consume("L:d:lease", 1_000, EXPIRES)  # fetches a block of 10, uses 1
    assert [counter.take_leased("L:d:lease") for _ in range(10)] == [True] * 9 + [False]
    assert counting.reserves == 1
    assert await backend.used("L:d:lease") == 10


class GatedBackend(CountingBackend):
    """Holds each reservation until `gate` opens, after the real backend has granted it."""

    def __init__(self, inner: SQLCounters | RedisCounters) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.granted = asyncio.Event()

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> tuple[int, int]:
        result = await super().reserve(key, limit, n, expires_at)
        self.granted.set()
        await self.gate.wait()
        return result


async def test_a_block_fetched_while_its_licence_changes_is_not_kept(backend) -> None:
    """forget() during a block fetch: the request that fetched is served, the rest of the block
    goes back to the shared count, and the next request asks the backend again."""
    gated = GatedBackend(backend)
    counter = LeasedCounter(gated, max_lease=100, exact_below=10)
    fetching = asyncio.create_task(counter.try_consume("L:d:changed", 100_000, EXPIRES))
    await gated.granted.wait()
    counter.forget("L")  # the licence L changed
    gated.gate.set()
    assert await fetching
    assert await backend.used("L:d:changed") == 1
    assert await counter.try_consume("L:d:changed", 100_000, EXPIRES) and gated.reserves == 2


async def test_refund_and_close_give_units_back(backend) -> None:
    """A refunded unit and a closed counter's unused lease return to the shared count."""
    counter = LeasedCounter(backend)
    assert await counter.try_consume("L:d:refund", 10, EXPIRES)
    await counter.refund("L:d:refund")
    assert await backend.used("L:d:refund") == 0
    big = LeasedCounter(backend, max_lease=50)
    assert await big.try_consume("L:d:lease", 1_000_000, EXPIRES)
    assert await backend.used("L:d:lease") == 50
    await big.close()
    assert await backend.used("L:d:lease") == 1


async def test_sql_counters_on_a_closed_port_fail_closed() -> None:
    """PostgreSQL unreachable: the reservation raises ServiceUnavailable, it never grants."""
    engine = make_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", connect_args={"timeout": 2})
    try:
        with pytest.raises(ServiceUnavailable):
            await SQLCounters(engine).reserve("L:d:x", 10, 1, EXPIRES)
        with pytest.raises(ServiceUnavailable):
            await LeasedCounter(SQLCounters(engine)).try_consume("L:d:x", 10, EXPIRES)
    finally:
        await engine.dispose()


async def test_redis_counters_on_a_closed_port_fail_closed() -> None:
    """Redis unreachable: start and reserve raise ServiceUnavailable, never a grant."""
    counters = RedisCounters(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        with pytest.raises(ServiceUnavailable):
            await counters.start()
        with pytest.raises(ServiceUnavailable):
            await LeasedCounter(counters).try_consume("L:d:x", 10, EXPIRES)
    finally:
        await counters.close()


async def test_sql_purge_drops_ended_windows(tmp_path) -> None:
    """Counters of windows that ended more than a day ago are deleted."""
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    sql = SQLCounters(engine)
    await sql.start()
    old = dt.datetime(2026, 1, 1, tzinfo=CST)
    await sql.reserve("L:d:2025-12-31", 5, 1, old)
    await sql.reserve("L:d:2026-01-05", 5, 1, old + dt.timedelta(days=5))
    await sql.purge(old + dt.timedelta(days=2))
    assert await sql.used("L:d:2025-12-31") == 0
    assert await sql.used("L:d:2026-01-05") == 1
    await engine.dispose()


async def test_forget_drops_a_licences_leases(tmp_path) -> None:
    """After its licence changed, a process no longer spends units it leased under the old terms."""
    engine = make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    sql = SQLCounters(engine)
    await sql.start()
    counter = LeasedCounter(sql, max_lease=50)
    assert await counter.try_consume("LIC:d:2026-11-26", 1_000_000, EXPIRES)
    assert await counter.try_consume("OTHER:d:2026-11-26", 1_000_000, EXPIRES)
    counter.forget("LIC")
    assert await counter.try_consume("LIC:d:2026-11-26", 60, EXPIRES)  # a new, small limit: metered anew
    assert await sql.used("LIC:d:2026-11-26") == 51
    assert counter._leases == {"OTHER:d:2026-11-26": 49}
    await engine.dispose()
