"""Quota counters that stay exact across gateway processes: SQL or Redis, with local leases.

A backend `reserve(key, limit, n, expires_at)` atomically grants up to `n` units while the
window's count stays at or under `limit`, and returns how many it granted. SQL does it inside
one locked transaction (BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE on PostgreSQL); Redis
in one Lua script. `LeasedCounter` asks for one unit at a time while a window is small or
nearly used up (so N concurrent requests against Q remaining admit exactly Q), and for blocks
of units while plenty remain (so a quota of a million a day costs a round trip per block, not
per request). The total granted never exceeds the limit. A backend that cannot answer raises
ServiceUnavailable: quotas fail closed, never unmetered.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, MetaData, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.errors import ServiceUnavailable

metadata = MetaData()
quota_counters = Table(
    "quota_counters",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("used", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

EXACT_BELOW = 2000  # windows whose remaining count is under this are metered one by one


class CounterBackend(Protocol):
    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> int: ...

    async def used(self, key: str) -> int: ...


class SQLCounters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> int:
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
                return grant
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable("The quota store cannot be reached, so no request is admitted.") from exc

    async def used(self, key: str) -> int:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(quota_counters.c.used).where(quota_counters.c.key == key))).scalar()
            return int(value or 0)


_RESERVE_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return grant
"""


class RedisCounters:
    def __init__(self, url: str, *, prefix: str = "credgate:quota:") -> None:
        import redis.asyncio as redis_asyncio

        self._redis = redis_asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._script = self._redis.register_script(_RESERVE_LUA)

    async def start(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, awaitable: Any) -> Any:
        import redis.exceptions

        try:
            return await awaitable
        except (redis.exceptions.RedisError, OSError) as exc:
            raise ServiceUnavailable("The quota store cannot be reached, so no request is admitted.") from exc

    async def reserve(self, key: str, limit: int, n: int, expires_at: dt.datetime) -> int:
        expires_ms = int(expires_at.timestamp() * 1000) + 60_000
        return int(await self._call(self._script(keys=[self._prefix + key], args=[limit, n, expires_ms])))

    async def used(self, key: str) -> int:
        return int(await self._call(self._redis.get(self._prefix + key)) or 0)


class LeasedCounter:
    def __init__(self, backend: CounterBackend, *, max_lease: int = 1000) -> None:
        self._backend = backend
        self._max_lease = max_lease
        self._leases: dict[str, int] = {}

    async def try_consume(self, key: str, limit: int, expires_at: dt.datetime) -> bool:
        if self._leases.get(key, 0) > 0:
            self._leases[key] -= 1
            return True
        block = 1 if limit < EXACT_BELOW else min(self._max_lease, limit // EXACT_BELOW)
        granted = await self._backend.reserve(key, limit, block, expires_at)
        if granted <= 0:
            return False
        if granted > 1:
            self._leases[key] = self._leases.get(key, 0) + granted - 1
        return True

    def forget(self, prefix: str) -> None:
        """Drop local leases whose key starts with `prefix` (a licence changed)."""
        for key in [k for k in self._leases if k.startswith(prefix)]:
            del self._leases[key]
