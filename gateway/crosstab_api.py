"""The cross-region exchange over HTTP (CONTRACTS.md sections 2 and 6) and its wiring.

Routes: `POST /crosstab/v1/inbox` (scope crosstab:push), `GET /crosstab/v1/outbox` (scope
crosstab:pull), `GET /crosstab/v1/jwks.json` (public) and `POST /admin/partners` (scope admin).
The logic is `crosstab.runtime.CrosstabRuntime`; this module authenticates, audits and answers.

No exchange without its audit entry. Every inbox or outbox request, answered 200 or refused
(401, 403, 400, 413, ...), is an entry of kind "crosstab" appended before the answer exists;
the answer carries `Audit-Entry`, and if the log cannot record, the answer is 503 with no
records in it. Requests refused by the error middleware before a handler runs (body over the
size limit, wrong method) are audited by the `on_response_prepare` hook instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.clock import Clock, rfc3339, system_clock
from credcore.db import make_engine
from credcore.errors import AuditUnavailable, BadRequest, ConfigError, CredgateError, NotFound, RequestTooLarge
from crosstab.audit_entries import ExchangeRecord
from crosstab.keys import database_region
from crosstab.runtime import AuditSink, CrosstabRuntime, RuntimeOptions
from crosstab.store import CrosstabStore
from gateway.admin import audit_admin
from gateway.auth import require_scope
from gateway.config import CrosstabSettings, Settings
from gateway.oauth import OAuthService
from gateway.release import error_headers, error_response, json_bytes
from gateway.services import GATEWAY

__all__ = ["CROSSTAB", "CrosstabRuntime", "install", "offline_runtime", "setup_crosstab"]
log = logging.getLogger(__name__)

CROSSTAB = web.AppKey("crosstab", CrosstabRuntime)
PUSH_SCOPE, PULL_SCOPE, ADMIN_SCOPE = "crosstab:push", "crosstab:pull", "admin"
INBOX, OUTBOX, JWKS = "/crosstab/v1/inbox", "/crosstab/v1/outbox", "/crosstab/v1/jwks.json"
_AUDITED = "credgate.crosstab.audited"
Work = Callable[[CrosstabRuntime, str, ExchangeRecord, web.Request], Awaitable[dict[str, Any]]]


async def setup_crosstab(
    settings: Settings, engine: AsyncEngine, oauth: OAuthService, audit: AuditSink, clock: Clock
) -> CrosstabRuntime | None:
    """The exchange of this process, or None when `[crosstab] enabled` is false."""
    if not settings.crosstab.enabled:
        return None
    return await CrosstabRuntime.start(
        engine, _options(settings.crosstab), audit=audit, clients=oauth,
        audit_admin=functools.partial(audit_admin, audit, clock), clock=clock,
    )


def _options(cfg: CrosstabSettings) -> RuntimeOptions:
    return RuntimeOptions.from_settings(region=cfg.region, domestic_regions=cfg.domestic_regions,
                                        max_batch=cfg.max_batch)


def _runtime(request: web.Request) -> CrosstabRuntime:
    runtime = request.app.get(CROSSTAB)
    if runtime is None:
        raise NotFound("Cross-region exchange is not enabled on this gateway.")
    return runtime


# --- the exchange endpoints ---------------------------------------------------------------

async def _answer(request: web.Request, rec: ExchangeRecord, status: int, body: bytes,
                  error: CredgateError | None) -> web.Response:
    """Append the exchange's entry, and only then build the answer that carries it."""
    gw = request.app[GATEWAY]
    request[_AUDITED] = True
    entry = rec.entry(time=rfc3339(gw.clock.now()), status=status, body=body, error=error.code if error else None)
    try:
        index = await asyncio.shield(gw.audit.append(entry))
    except AuditUnavailable as exc:
        return error_response(exc)
    headers = {**(error_headers(error) if error else {}), "Audit-Entry": str(index)}
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


async def _exchange(request: web.Request, rec: ExchangeRecord, scope: str, work: Work) -> web.Response:
    rec.method, rec.path, rec.query = request.method, request.path[:512], request.query_string[:512]
    error: CredgateError
    try:
        runtime = _runtime(request)
        claims = require_scope(request, scope)  # 401 invalid_token, 403 insufficient_scope
        rec.client_id = claims.client_id
        body = await work(runtime, claims.client_id, rec, request)
    except CredgateError as exc:
        error = exc
    except web.HTTPRequestEntityTooLarge:
        error = RequestTooLarge("The request body is too large.")
    except Exception:  # a database or programming error: still an exchange, still recorded
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = CredgateError("The gateway failed to handle the exchange.")
    else:
        return await _answer(request, rec, 200, json_bytes(body), None)
    rec.reason = error.description
    return await _answer(request, rec, error.status, json_bytes(error.body()), error)


async def _push(runtime: CrosstabRuntime, client_id: str, rec: ExchangeRecord, request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest('Send the batch as application/json: {"records": [<jws>, ...]}.')
    return await runtime.inbox(client_id, await request.read(), rec)


async def _pull(runtime: CrosstabRuntime, client_id: str, rec: ExchangeRecord, request: web.Request) -> dict[str, Any]:
    return await runtime.outbox(client_id, request.query.get("after"), request.query.get("limit"), rec)


async def inbox(request: web.Request) -> web.Response:
    return await _exchange(request, ExchangeRecord(exchange="push", direction="in"), PUSH_SCOPE, _push)


async def outbox(request: web.Request) -> web.Response:
    return await _exchange(request, ExchangeRecord(exchange="pull", direction="out"), PULL_SCOPE, _pull)


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(_runtime(request).jwks(), headers={"Cache-Control": "public, max-age=300"})


async def _audit_refusal(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Audit an exchange request answered before its handler ran (middleware limits, 405)."""
    if request.path not in (INBOX, OUTBOX) or request.get(_AUDITED) or not isinstance(request, web.Request):
        return
    request[_AUDITED] = True
    rec = ExchangeRecord(exchange="push" if request.path == INBOX else "pull",
                         direction="in" if request.path == INBOX else "out",
                         method=request.method, path=request.path[:512], query=request.query_string[:512])
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
    error = None
    with contextlib.suppress(ValueError, AttributeError):
        error = json.loads(body).get("error")
        rec.reason = str(json.loads(body).get("error_description", ""))
    gw = request.app[GATEWAY]
    entry = rec.entry(time=rfc3339(gw.clock.now()), status=response.status, body=body, error=error)
    try:
        response.headers["Audit-Entry"] = str(await asyncio.shield(gw.audit.append(entry)))
    except CredgateError as exc:  # a refusal releases no data; the log says why it is missing
        log.error("could not audit a refused %s %s: %s", request.method, request.path, exc.description)


# --- admin ---------------------------------------------------------------------------------

async def partners_post(request: web.Request) -> web.Response:
    """`POST /admin/partners`: register a partner region; 201 with its OAuth client."""
    claims = require_scope(request, ADMIN_SCOPE)
    runtime = _runtime(request)
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    result = await runtime.register_partner(body, actor=claims.client_id)
    return web.json_response(result, status=201)


def install(app: web.Application) -> None:
    """Add the routes and the refusal hook (before the app starts: both freeze then)."""
    app.router.add_post(INBOX, inbox)
    app.router.add_get(OUTBOX, outbox)
    app.router.add_get(JWKS, jwks)
    app.router.add_post("/admin/partners", partners_post)
    app.on_response_prepare.append(_audit_refusal)


# --- the same runtime for the CLI, straight on the database --------------------------------

@contextlib.asynccontextmanager
async def offline_runtime(*, config: Path | None = None, db: str | None = None,
                          clock: Clock = system_clock) -> AsyncIterator[CrosstabRuntime]:
    """A runtime on the gateway's database, for `credgate crosstab ...` (actions audited too).

    With `config` (the gateway's TOML) it has the gateway's region and domestic set; with only
    `db` it takes the region the database signs for and treats no partner as domestic."""
    from audit.writer import AuditWriter

    if (config is None) == (db is None):
        raise ConfigError("give exactly one of --config or --db.")
    options: RuntimeOptions | None = None
    if config is not None:
        from gateway.config import load_settings

        settings = load_settings(config, environ=os.environ)
        if not settings.crosstab.enabled:
            raise ConfigError(f"[crosstab] is not enabled in {config}.")
        db, options = settings.database.url, _options(settings.crosstab)
    engine = make_engine(db or "")
    writer = AuditWriter(engine)
    try:
        await CrosstabStore(engine).create_tables()
        if options is None:
            region = await database_region(engine)
            if region is None:
                raise ConfigError(f"{db} has no crosstab region yet: use --config, or start the gateway once.")
            options = RuntimeOptions(region, frozenset())
        oauth = OAuthService(engine, issuer="offline", audience="offline", clock=clock)
        await oauth.start()
        await writer.start()
        yield await CrosstabRuntime.start(
            engine, options, audit=writer, clients=oauth,
            audit_admin=functools.partial(audit_admin, writer, clock), clock=clock,
        )
    finally:
        await writer.close()
        await engine.dispose()
