"""Quotas exact across several `credgate serve` processes sharing PostgreSQL, or sharing Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import REDIS_HINT, need_service
from tests.policies.support import Cluster, cluster, licence, pg_database

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three gateway processes on one PostgreSQL database (quota counters in PostgreSQL)."""
    with pg_database() as url, cluster(tmp_path_factory.mktemp("pgq"), db_url=url, size=3) as shared:
        yield shared


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two gateway processes sharing one SQLite file, with the quota counters in Redis."""
    need_service(6379, "Redis", REDIS_HINT)
    tmp = tmp_path_factory.mktemp("redisq")
    env = {"CREDGATE_QUOTAS_BACKEND": "redis", "CREDGATE_QUOTAS_REDIS_URL": "redis://127.0.0.1:6379/0"}
    with cluster(tmp, db_url=f"sqlite:///{Path(tmp) / 'gateway.db'}", size=2, env=env) as shared:
        yield shared


async def burst(shared: Cluster, client_id: str, path: str, n: int) -> list[int]:
    """`n` concurrent requests spread round-robin over every process of the cluster."""
    async with aiohttp.ClientSession() as session:
        token = await shared.token(session, client_id)

        async def one(i: int) -> int:
            url = shared.urls[i % len(shared.urls)]
            async with session.get(url + path, headers={"Authorization": f"Bearer {token}",
                                                        "X-Purpose": "credit_check"}) as resp:
                await resp.read()
                return resp.status

        return sorted(await asyncio.gather(*(one(i) for i in range(n))))


async def test_burst_across_postgres_processes_admits_exactly_q(pg_cluster: Cluster, sample_code: str) -> None:
    """2×Q concurrent requests over three processes sharing PostgreSQL admit exactly Q."""
    quota = 30
    client_id = f"pgq{uuid.uuid4().hex[:8]}"
    await pg_cluster.provision(client_id, body=licence(quotas={"per_day": quota}))
    await pg_cluster.wait_licensed(client_id, sample_code)
    statuses = await burst(pg_cluster, client_id, f"/v1/entities/{sample_code}", 2 * quota)
    assert statuses == [200] * quota + [429] * quota


async def test_burst_across_redis_processes_admits_exactly_q(redis_cluster: Cluster, sample_code: str) -> None:
    """2×Q concurrent requests over two processes counting in Redis admit exactly Q."""
    quota = 25
    client_id = f"rq{uuid.uuid4().hex[:8]}"  # licence ids are Redis keys: unique per run
    await redis_cluster.provision(client_id, body=licence(quotas={"per_day": quota}))
    await redis_cluster.wait_licensed(client_id, sample_code)
    statuses = await burst(redis_cluster, client_id, f"/v1/entities/{sample_code}", 2 * quota)
    assert statuses == [200] * quota + [429] * quota
