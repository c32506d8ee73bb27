"""Fixtures shared by every test package: the real PostgreSQL and Redis of this machine, the
reference store on loopback, and a gateway harness with demo-like operators.

PostgreSQL and Redis are used for real. Under CI (CI=true) a missing service fails the test;
elsewhere the test is skipped with the command that starts the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from credcore.clock import CST
from credstore.app import make_app as make_store_app
from credstore.generator import Dataset, generate
from gateway.admin import provision_operator
from gateway.app import RUNNER_LIMITS, build_app
from gateway.config import Settings, load_settings
from gateway.services import GATEWAY, Services

PG_HINT = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_HINT = "start it with: redis-server --daemonize yes --port 6379 --save '' --appendonly no"
REFERENCE = dt.date(2026, 11, 1)


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def need_service(port: int, name: str, hint: str) -> None:
    if _reachable(port):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not reachable on 127.0.0.1:{port} under CI; {hint}")
    pytest.skip(f"{name} is not running on 127.0.0.1:{port}; {hint}")


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    need_service(5432, "PostgreSQL", PG_HINT)
    import asyncpg

    name = f"credgate_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_url() -> str:
    need_service(6379, "Redis", REDIS_HINT)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """A small deterministic store: 60 entities, 400 records."""
    return generate(seed=11, entities=60, records=400, reference_date=REFERENCE)


@pytest.fixture
async def store_url(dataset: Dataset) -> AsyncIterator[str]:
    server = TestServer(make_store_app(dataset, today=lambda: dt.datetime.now(CST).date()), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


ServeApp = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """serve(app) -> the base URL of `app` running on loopback (a store or a partner that behaves
    as a test says); every one is closed after the test."""
    servers: list[TestServer] = []

    async def serve(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield serve
    for server in servers:
        await server.close()


OPERATOR_LICENCE: dict[str, Any] = {
    "datasets": {
        "entities": "*",
        "penalties": "*",
        "licences": "*",
        "serious_untrustworthy": "*",
        "disclosures": "*",
        "recognitions": "*",
    },
    "purposes": ["credit_check", "risk_control"],
    "default_purpose": "credit_check",
    "regions": ["000000"],
    "not_before": "2025-01-01T00:00:00+08:00",
    "not_after": "2029-01-01T00:00:00+08:00",
    "quotas": {"rate_per_second": 100000, "burst": 100000, "per_day": 1000000, "page_size_max": 1000},
}


@dataclass
class Harness:
    client: TestClient
    app: web.Application
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def gw(self) -> Services:
        return self.app[GATEWAY]

    async def add_client(self, client_id: str, scope: str = "data:read", licence: dict[str, Any] | None = None) -> str:
        _cid, secret = await provision_operator(
            self.gw, name=client_id, scope=scope, client_id=client_id, licence=licence, licence_id=f"{client_id}-L1"
        )
        assert secret is not None
        self.secrets[client_id] = secret
        return secret

    async def token(self, client_id: str, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        basic = aiohttp.encode_basic_auth(client_id, self.secrets[client_id])
        resp = await self.client.post("/oauth/token", data=data, headers={"Authorization": basic})
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])

    async def get(
        self, path: str, token: str | None, purpose: str | None = "credit_check", **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if purpose:
            headers["X-Purpose"] = purpose
        return await self.client.get(path, headers=headers, **kw)


GatewayFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_gateway(tmp_path: Any, store_url: str) -> AsyncIterator[GatewayFactory]:
    """A factory of running gateways (SQLite under tmp_path unless a database URL is given)."""
    clients: list[TestClient] = []

    async def factory(
        *,
        db_url: str | None = None,
        upstream: str | None = None,
        clock: Any = None,
        settings: Settings | None = None,
        operators: bool = True,
        **sections: dict[str, Any],
    ) -> Harness:
        overrides: dict[str, dict[str, Any]] = {
            "database": {"url": db_url or f"sqlite:///{tmp_path / 'gateway.db'}"},
            "upstream": {"url": upstream or store_url, "read_timeout": 2.0},
            "audit": {"checkpoint_interval": 0.2},
            "licensing": {"poll_interval": 0.2},
        }
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        cfg = settings or load_settings(environ={}, overrides=overrides)
        app = build_app(cfg, **({"clock": clock} if clock else {}))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(**RUNNER_LIMITS)
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        harness = Harness(client, app)
        if operators:
            await harness.add_client("op", licence=OPERATOR_LICENCE)
            await harness.add_client("auditor", scope="audit:read")
            await harness.add_client("admin", scope="admin")
        return harness

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> Harness:
    return await make_gateway()


def penalty_code(dataset: Dataset) -> str:
    return dataset.sample_uscc()[0]


@pytest.fixture
def sample_code(dataset: Dataset) -> str:
    """A code whose entity has at least one penalty shown today."""
    return penalty_code(dataset)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> bool:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False
