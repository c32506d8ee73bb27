"""Shared pieces of the OAuth tests: a service factory, HTTP helpers and token forgers.

Import the fixture explicitly into a test module (`from tests.gateway.oauth_fixtures
import oauth_fixture`) so pytest finds it there; tests then ask for `oauth`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, unused_port
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credcore.clock import Clock, FixedClock
from credcore.errors import CredgateError
from gateway.oauth import OAuthService
from gateway.oauth.keys import SigningKey
from gateway.oauth.store import OAuthStore

ISSUER = "https://credgate.test"
AUDIENCE = "https://credgate.test/v1"
TOKEN_ENDPOINT = ISSUER + "/oauth/token"
START = "2026-03-02T09:00:00+08:00"
POSTGRES_URL = os.environ.get(
    "CREDGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# joserfc flags EdDSA (RFC 8037) in favour of RFC 9864's "Ed25519"; the contract names EdDSA.
IGNORE_EDDSA_WARNING = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@dataclass
class Env:
    """One running service with what a test needs around it."""

    service: OAuthService
    engine: AsyncEngine
    clock: Any  # a FixedClock unless the test asked for another Clock
    http: TestClient[Any, Any] | None = None

    async def signing_key(self) -> SigningKey:
        """The service's own signing key, read from its table (to forge well-signed tokens)."""
        return (await OAuthStore(self.engine).active_keys())[0]


Factory = Callable[..., Awaitable[Env]]


async def _postgres_engine() -> tuple[AsyncEngine, Callable[[], Awaitable[None]]]:
    """An engine on a fresh PostgreSQL schema, and how to drop it; skips if no server."""
    schema = f"oauth_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL is not running ({exc}); start it with: "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    engine = create_async_engine(POSTGRES_URL).execution_options(
        schema_translate_map={None: schema}
    )

    async def drop() -> None:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()

    return engine, drop


@web.middleware
async def credgate_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """What the gateway's error middleware does: a CredgateError becomes its status and body."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except CredgateError as error:
        return web.json_response(error.body(), status=error.status)


@pytest.fixture(name="oauth")
async def oauth_fixture(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[Factory]:
    """A factory of started services, each behind a real aiohttp server on loopback.

    `db` names a SQLite file or is "postgres"; `same_db_as` opens another engine on the
    database of an earlier service (another gateway process);
    `issuer="loopback"` makes the issuer the server's own http://127.0.0.1:PORT, as in the demo.
    """
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(
        *,
        db: str = "oauth.db",
        same_db_as: Env | None = None,
        clock: Clock | None = None,
        http: bool = True,
        **options: Any,
    ) -> Env:
        if same_db_as is not None:  # another process on the same database
            first = same_db_as.engine
            engine = create_async_engine(first.url).execution_options(
                **first.get_execution_options()
            )
            cleanups.append(engine.dispose)
        elif db == "postgres":
            engine, drop = await _postgres_engine()
            cleanups.append(drop)
        else:
            engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / db}")
            cleanups.append(engine.dispose)
        clock = clock or FixedClock(START)
        port = unused_port()
        if options.get("issuer") == "loopback":
            options["issuer"] = f"http://127.0.0.1:{port}"
        options.setdefault("issuer", ISSUER)
        options.setdefault("audience", AUDIENCE)
        service = OAuthService(engine, clock=clock, **options)
        await service.start()
        env = Env(service=service, engine=engine, clock=clock)
        if http:
            app = web.Application(middlewares=[credgate_errors])
            app.add_routes(service.routes())
            env.http = await aiohttp_client(app, server_kwargs={"port": port})
        return env

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An HTTP Basic Authorization header (RFC 6749 §2.3.1: form-encoded, then base64)."""
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


async def post_form(
    http: TestClient[Any, Any],
    path: str,
    data: Mapping[str, str] | list[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    response = await http.post(path, data=data, headers=headers)
    return response.status, await response.json(), response.headers


async def get_token(env: Env, client_id: str, secret: str, scope: str | None = None) -> str:
    """An access token by client_secret_basic, or a failed assertion."""
    assert env.http is not None
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    status, body, _ = await post_form(env.http, "/oauth/token", data, basic(client_id, secret))
    assert status == 200, body
    token: str = body["access_token"]
    return token


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value).encode())


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Header and claims of a compact JWS (unverified), and its signature segment."""
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def good_claims(clock: FixedClock, **overrides: Any) -> dict[str, Any]:
    """Claims that the service's verifier accepts, at the clock's time."""
    now = int(clock.time())
    claims = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "client_id": "client-1",
        "scope": "penalties:read",
        "jti": "jti-" + uuid.uuid4().hex,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """Run a blocking client (requests) off the event loop that serves it."""
    return asyncio.to_thread(fn, *args, **kwargs)
