"""The gateway application: one object of each kind per process, wired under typed app keys.

`build_app` is pure wiring; `cleanup_ctx` starts the shared objects in dependency order and
stops them in reverse (the audit writer drains its queue before the engine is disposed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from audit.writer import AuditWriter
from credcore.clock import Clock, system_clock
from credcore.db import make_engine
from gateway import admin, audit_api, crosstab_api, overscope
from gateway.config import Settings
from gateway.licensing import Licensing
from gateway.middleware import error_middleware
from gateway.oauth import OAuthService
from gateway.pipeline import v1_handler
from gateway.services import GATEWAY, Services
from gateway.tracing import Tracing, make_tracer
from gateway.upstream import Upstream
from policies.counters import LeasedCounter, RedisCounters, SQLCounters
from policies.store import LicenceStore

log = logging.getLogger(__name__)

SCOPES = ("data:read", "audit:read", "admin", "crosstab:push", "crosstab:pull")


async def _poll_revocations(oauth: OAuthService, interval: float, stop: asyncio.Event) -> None:
    """Pick up token revocations made by other gateway processes within `interval`.

    Stopped through `stop`, never cancelled: a query cancelled half-way can leave its SQLite
    transaction open, and the lock it holds then stalls every writer for the busy timeout."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            await oauth.refresh_revocations()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("revocation refresh failed: %s", exc)
        except Exception:  # a bug or a library's race must not end revocation polling for good
            log.exception("revocation refresh failed unexpectedly; retried next tick")


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(settings: Settings, *, clock: Clock = system_clock,
              token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> web.Application:
    app = web.Application(middlewares=[error_middleware()], client_max_size=settings.server.max_body_bytes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.database.url, busy_timeout=settings.database.busy_timeout)
        tracer, provider = make_tracer(settings.tracing)
        oauth = OAuthService(
            engine, issuer=settings.issuer, audience=settings.audience, clock=clock, token_bytes=token_bytes,
            token_lifetime=settings.oauth.token_lifetime, scopes_supported=SCOPES,
        )
        writer = AuditWriter(engine, max_batch=settings.audit.max_batch)
        licence_store = LicenceStore(engine)
        backend: SQLCounters | RedisCounters
        if settings.quotas.backend == "redis":
            backend = RedisCounters(settings.quotas.redis_url)
        else:
            backend = SQLCounters(engine)
        licensing = Licensing(
            licence_store, LeasedCounter(backend), clock, poll_interval=settings.licensing.poll_interval
        )
        upstream = Upstream(
            settings.upstream.url, connect_timeout=settings.upstream.connect_timeout,
            read_timeout=settings.upstream.read_timeout, pool_size=settings.upstream.pool_size,
        )
        await oauth.start()
        await writer.start()
        checkpointer = await audit_api.setup(app, settings.audit, engine, writer, clock)
        await licence_store.start()
        await backend.start()
        await licensing.start()
        await upstream.start()
        await checkpointer.start()

        async def no_recognitions(uscc: str) -> Any:
            return {"uscc": uscc, "records": []}

        crosstab = await crosstab_api.setup_crosstab(settings, engine, oauth, writer, clock)
        if crosstab is not None:
            app[crosstab_api.CROSSTAB] = crosstab
        recognitions = crosstab.recognitions if crosstab else no_recognitions

        app[GATEWAY] = Services(
            settings=settings, clock=clock, engine=engine, oauth=oauth, licence_store=licence_store,
            licensing=licensing, upstream=upstream, audit=writer, checkpointer=checkpointer,
            tracer=tracer, tracing=Tracing(tracer, recording=settings.tracing.exporter != "none"),
            tracer_provider=provider, recognitions=recognitions,
        )
        guard = overscope.install(app[GATEWAY])  # over-scope detection (an access observer)
        stop_polling = asyncio.Event()
        poller = asyncio.create_task(_poll_revocations(oauth, settings.licensing.poll_interval, stop_polling))
        try:
            yield
        finally:
            stop_polling.set()
            await poller
            await guard.close()
            await checkpointer.close()
            await audit_api.teardown(app)
            await licensing.close()
            await upstream.close()
            await writer.close()
            if isinstance(backend, RedisCounters):
                await backend.close()
            provider.shutdown()
            await engine.dispose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", health)
    app.router.add_routes(audit_api.routes())
    app.router.add_routes(admin.routes())
    crosstab_api.install(app)
    app.router.add_route("*", "/v1/{tail:.*}", v1_handler)
    app.router.add_route("*", "/v1", v1_handler)

    # The router freezes before startup, so the OAuth routes are fixed here and dispatch to
    # the OAuthService made in `lifecycle`.
    for method, path in OAUTH_ROUTES:
        app.router.add_route(method, path, _oauth_dispatch)
    return app


OAUTH_ROUTES = (
    ("POST", "/oauth/token"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/revoke"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/.well-known/jwks.json"),
)


async def _oauth_dispatch(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    for route in gw.oauth.routes():
        if isinstance(route, web.RouteDef) and route.method == request.method and route.path == request.path:
            return await route.handler(request)
    raise web.HTTPNotFound()


RUNNER_LIMITS: dict[str, Any] = {
    # aiohttp's parser answers 400 past these; ours (414/431) sit well below them.
    "max_line_size": 65536,
    "max_field_size": 65536,
    "max_headers": 256,
}


def settle_heap() -> None:
    """Called once a serving process has started. What startup built (modules, the route table,
    keys, the policy index) lives as long as the process, yet every full collection of the
    cyclic GC would walk it again; freezing it takes it out of their sight, and a larger first
    generation makes collections rarer. Not for test processes, which build many apps."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, **RUNNER_LIMITS)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    settle_heap()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
