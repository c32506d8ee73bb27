"""Quotas kept in PostgreSQL or Redis: exact there too, and fail closed (503, no data) the moment
the store becomes unreachable, never admitting unmetered."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from credcore.errors import ServiceUnavailable
from tests.policies.support import Proxy, audit_entry, closed_port, licence


async def test_burst_on_postgres_and_redis_in_one_process(make_gateway, pg_url, redis_url, sample_code) -> None:
    """2×Q concurrent requests admit exactly Q with the database on PostgreSQL and counters in Redis."""
    gateway = await make_gateway(db_url=pg_url, quotas={"backend": "redis", "redis_url": redis_url})
    lid = f"r{uuid.uuid4().hex[:10]}"
    await gateway.add_client(lid, licence=licence(quotas={"per_day": 15}))
    token = await gateway.token(lid)
    responses = await asyncio.gather(*(gateway.get(f"/v1/entities/{sample_code}", token) for _ in range(30)))
    assert sorted(r.status for r in responses) == [200] * 15 + [429] * 15


async def test_redis_unreachable_answers_503_never_unmetered(make_gateway, redis_url, sample_code) -> None:
    """With the counters in Redis and Redis cut off, requests get 503 and no data, audited as errors."""
    proxy = Proxy(6379)
    await proxy.start()
    gateway = await make_gateway(quotas={"backend": "redis", "redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
    lid = f"u{uuid.uuid4().hex[:10]}"
    await gateway.add_client(lid, licence=licence(quotas={"per_day": 100}))
    token = await gateway.token(lid)
    path = f"/v1/entities/{sample_code}"
    assert (await gateway.get(path, token)).status == 200
    await proxy.cut()
    for _ in range(3):
        resp = await gateway.get(path, token)
        body = await resp.json()
        assert resp.status == 503, body
        assert body["error"] == "service_unavailable" and "records" not in body and "name" not in body
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["decision"] == "error" and entry["status"] == 503 and entry["fields"] == []


async def test_postgres_unreachable_answers_503_never_unmetered(make_gateway, pg_url, sample_code) -> None:
    """With quotas (and the rest) in PostgreSQL and PostgreSQL cut off, requests get 503 and no data."""
    proxy = Proxy(5432)
    await proxy.start()
    db_url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    gateway = await make_gateway(db_url=db_url)
    await gateway.add_client("pgq", licence=licence(quotas={"per_day": 100}))
    token = await gateway.token("pgq")
    path = f"/v1/entities/{sample_code}"
    assert (await gateway.get(path, token)).status == 200
    await proxy.cut()
    for _ in range(3):
        resp = await gateway.get(path, token)
        body = await resp.json()
        assert resp.status == 503, body
        assert body["error"] in ("service_unavailable", "audit_unavailable")
        assert "name" not in body and "records" not in body


async def test_gateway_does_not_start_without_its_quota_store(make_gateway) -> None:
    """A gateway whose Redis counter store is unreachable at start refuses to start (fail closed)."""
    with pytest.raises(ServiceUnavailable):
        await make_gateway(quotas={"backend": "redis", "redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
