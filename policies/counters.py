"""Quota counters that stay exact across gateway processes: SQL or Redis, with local leases.

A backend's `reserve(key, limit, n, expires_at)` atomically grants up to `n` units while the
window's count stays at or under `limit`, and returns how many it granted and the count after
the grant. SQL does it inside one locked transaction (BEGIN IMMEDIATE on SQLite, SELECT ...
FOR UPDATE on PostgreSQL); Redis in one Lua script. `give_back` returns units (a request that
another window refused, or a process's unused lease at shutdown).

`LeasedCounter` asks for one unit at a time while a window is small or nearly used up (fewer
than EXACT_BELOW left), so N concurrent requests against Q remaining admit exactly Q on any
number of processes; while plenty remain it leases blocks of units, so a quota of a million a
day costs a round trip per block, not per request. One block at a time per key: the requests
that find the lease empty while a block is being fetched wait for it, rather than each fetching
its own (32 concurrent fetches queued on SQLite's write lock for up to 350 ms, and held up the
audit log's batches meanwhile). Granted units never exceed the limit. A backend that cannot
answer raises ServiceUnavailable: quotas fail closed, never unmetered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, MetaData, String, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.db import create_schema, reading
from credcore.errors import ServiceUnavailable

metadata = MetaData()
quota_counters = Table(
    "quota_counters",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("used", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

EXACT_BELOW = 2000  # while fewer units than this remain in a window, they are metered one by one
UNREACHABLE = "The quota store cannot be reached, so no request is admitted."


class CounterBackend(Protocol):
    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> tuple[int, int]: ...

    async def give_back(self, key: str, n: int) -> None: ...

    async def used(self, key: str) -> int: ...

    async def purge(self, now: dt.datetime) -> None: ...


class SQLCounters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await create_schema(conn, metadata.create_all)

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> tuple[int, int]:
        table = quota_counters
        try:
            async with self._engine.begin() as conn:
                make_insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
                await conn.execute(
                    make_insert(table)
                    .values(key=key, used=0, expires_us=int(expires_at.timestamp() * 1e6))
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                query = select(table.c.used).where(table.c.key == key)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                used = int((await conn.execute(query)).scalar_one())
                grant = max(0, min(n, limit - used))
                if grant:
                    await conn.execute(update(table).where(table.c.key == key).values(used=used + grant))
                return grant, used + grant
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc

    async def give_back(self, key: str, n: int) -> None:
        table = quota_counters
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(table).where(table.c.key == key, table.c.used >= n).values(used=table.c.used - n)
                )
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc

    async def used(self, key: str) -> int:
        try:
            async with reading(self._engine) as conn:
                value = (await conn.execute(select(quota_counters.c.used).where(quota_counters.c.key == key))).scalar()
                return int(value or 0)
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc

    async def purge(self, now: dt.datetime) -> None:
        """Drop the counters of windows that ended (a day after, so no late request recreates one)."""
        cutoff = int((now - dt.timedelta(days=1)).timestamp() * 1e6)
        async with self._engine.begin() as conn:
            await conn.execute(delete(quota_counters).where(quota_counters.c.expires_us < cutoff))


_RESERVE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if grant <= 0 then return {0, used} end
redis.call('INCRBY', KEYS[1], grant)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return {grant, used + grant}
"""

_GIVE_BACK_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]) end
return 0
"""


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = "credgate:quota:") -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE_LUA)
        self._give_back = self._redis.register_script(_GIVE_BACK_LUA)

    async def start(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, awaitable: Any) -> Any:
        import redis.exceptions

        try:
            return await awaitable
        except (redis.exceptions.RedisError, OSError) as exc:
            raise ServiceUnavailable(UNREACHABLE) from exc

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> tuple[int, int]:
        expires_ms = int(expires_at.timestamp() * 1000) + 60_000
        grant, used = await self._call(self._reserve(keys=[self._prefix + key], args=[limit, n, expires_ms]))
        return int(grant), int(used)

    async def give_back(self, key: str, n: int) -> None:
        await self._call(self._give_back(keys=[self._prefix + key], args=[n]))

    async def used(self, key: str) -> int:
        return int(await self._call(self._redis.get(self._prefix + key)) or 0)

    async def purge(self, now: dt.datetime) -> None:
        """Nothing to do: every window's key expires by itself (PEXPIREAT)."""


class LeasedCounter:
    def __init__(self, backend: CounterBackend, *, max_lease: int = 1000, exact_below: int = EXACT_BELOW) -> None:
        self.backend = backend
        self._max_lease = max_lease
        self._exact_below = exact_below
        self._leases: dict[str, int] = {}  # units granted to this process and not yet used
        self._remaining: dict[str, int] = {}  # what the backend said was left, at the last grant
        self._expires: dict[str, dt.datetime] = {}
        self._groups: dict[str, set[str]] = {}  # group (the key up to its first ':') → its keys
        self._refilling: dict[str, asyncio.Event] = {}  # key → set when its block fetch ends
        self._epochs: dict[str, int] = {}  # group → how many times it was forgotten

    def take_leased(self, key: str) -> bool:
        """Take one unit from this process's lease on `key` if it holds one: `try_consume`'s
        common case, without a coroutine per window per request."""
        if self._leases.get(key, 0) > 0:
            self._leases[key] -= 1
            return True
        return False

    async def try_consume(self, key: str, limit: int, expires_at: dt.datetime) -> bool:
        while self._leases.get(key, 0) <= 0 and key in self._refilling:
            await self._refilling[key].wait()  # then take from the new lease, or fetch again
        if self.take_leased(key):
            return True
        nearly_out = limit < self._exact_below or self._remaining.get(key, limit) < self._exact_below
        block = 1 if nearly_out else min(self._max_lease, limit // self._exact_below)
        refill = asyncio.Event() if block > 1 else None
        if refill is not None:
            self._refilling[key] = refill
        group = key.split(":", 1)[0]
        epoch = self._epochs.get(group, 0)
        try:
            granted, used = await self.backend.reserve(key, limit, block, expires_at)
        finally:
            if refill is not None:
                del self._refilling[key]
                refill.set()
        if self._epochs.get(group, 0) != epoch:
            # The licence changed during the fetch: this request, admitted before, is served,
            # but no lease is kept under the old terms (fail closed).
            if granted > 1:
                with contextlib.suppress(ServiceUnavailable):
                    await self.backend.give_back(key, granted - 1)
            return granted > 0
        self._remaining[key] = limit - used
        self._expires[key] = expires_at
        self._groups.setdefault(group, set()).add(key)
        if granted <= 0:
            return False
        if granted > 1:
            self._leases[key] = self._leases.get(key, 0) + granted - 1
        return True

    async def refund(self, key: str) -> None:
        """Undo one `try_consume` that was granted (the request was refused by another window)."""
        if self._leases.get(key, 0) > 0 or self._remaining.get(key, 0) >= self._exact_below:
            self._leases[key] = self._leases.get(key, 0) + 1
        else:
            await self.backend.give_back(key, 1)

    def forget(self, group: str) -> None:
        """Drop the local leases of every key `group:...` (its licence changed: fail closed), and
        of block fetches still in flight for them."""
        self._epochs[group] = self._epochs.get(group, 0) + 1
        for key in self._groups.pop(group, set()):
            self._leases.pop(key, None)
            self._remaining.pop(key, None)
            self._expires.pop(key, None)

    def drop_expired(self, now: dt.datetime) -> None:
        """Forget the leases and hints of windows that have ended."""
        for key in [k for k, until in self._expires.items() if until <= now]:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self._leases.pop(key, None)
        self._remaining.pop(key, None)
        self._expires.pop(key, None)
        keys = self._groups.get(key.split(":", 1)[0])
        if keys is not None:
            keys.discard(key)

    async def close(self) -> None:
        """Give unused leases back, so a stopped process strands no units (best effort)."""
        leases, self._leases = self._leases, {}
        for key, units in leases.items():
            if units > 0:
                try:
                    await self.backend.give_back(key, units)
                except ServiceUnavailable:
                    return
