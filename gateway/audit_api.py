"""The audit endpoints of CONTRACTS section 4, and the C2SP tlog-witness endpoint.

Public: the checkpoint (with any witness cosignatures), the note verifier key, the key history
(/audit/keys) and POST /witness/add-checkpoint (the spec authenticates a request by the log's
signature on the checkpoint, nothing else). Everything else needs an `audit:read` token:
operators get 403. Every query parameter is checked before anything is read; a bad one is a 400
that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.keys import history_json, load_keys
from audit.reader import AuditReader, b64
from audit.search import parse_search
from audit.witness import MAX_BODY, Witness, WitnessError
from audit.witnessing import (
    WitnessClient,
    WitnessService,
    load_or_create_cosigner,
    parse_witness_peers,
    parse_witnessed_logs,
)
from audit.writer import AuditWriter
from credcore.clock import Clock
from credcore.db import make_engine, reading
from credcore.errors import ConfigError, CredgateError, InvalidParameter
from gateway.auth import require_scope
from gateway.config import AuditSettings
from gateway.services import GATEWAY

AUDIT_SCOPE = "audit:read"
READER = web.AppKey("audit_reader", AuditReader)
WITNESS = web.AppKey("audit_witness", WitnessService)
READ_ENGINE = web.AppKey("audit_read_engine", AsyncEngine)
WARMING = web.AppKey("audit_proof_cache", asyncio.Task)
log = logging.getLogger(__name__)


async def setup(app: web.Application, settings: AuditSettings, engine: AsyncEngine, writer: AuditWriter,
                clock: Clock) -> Checkpointer:
    """The checkpointer (with its witnesses), the reader and, when configured, the witness."""
    read_engine = None
    if engine.dialect.name == "sqlite":
        with contextlib.suppress(ConfigError):  # an in-memory database has no read-only twin
            read_engine = make_engine(engine.url.render_as_string(hide_password=False), read_only=True)
    if read_engine is not None:
        app[READ_ENGINE] = read_engine
    reader = AuditReader(engine, read_engine=read_engine)
    app[READER] = reader
    peers = parse_witness_peers(settings.witnesses)
    client = WitnessClient(engine, peers, reader.consistency, timeout=settings.witness_timeout,
                           clock=clock) if peers else None
    signer = await load_or_create_signer(engine, settings.origin, clock)
    checkpointer = Checkpointer(engine, signer, origin=settings.origin, interval=settings.checkpoint_interval,
                                every=settings.checkpoint_entries, clock=clock, witnesses=client)
    writer.on_head(checkpointer.poke)
    app[WARMING] = asyncio.create_task(_warm(reader), name="audit-proof-cache")
    if settings.witness_name:
        cosigner = await load_or_create_cosigner(engine, settings.witness_name, clock)
        app[WITNESS] = WitnessService(engine, Witness(cosigner, parse_witnessed_logs(settings.witness_logs)), clock)
    return checkpointer


async def _warm(reader: AuditReader) -> None:
    try:
        await reader.warm()
    except (SQLAlchemyError, OSError, CredgateError) as exc:  # proofs then read what they need as they go
        log.warning("the proof cache was not warmed: %s", exc)


async def teardown(app: web.Application) -> None:
    """Dispose of what `setup` opened beside the gateway's engine."""
    warming = app.get(WARMING)
    if warming is not None and not warming.done():
        warming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warming
    read_engine = app.get(READ_ENGINE)
    if read_engine is not None:
        await read_engine.dispose()


def int_param(request: web.Request, name: str, *, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidParameter(name, f"The '{name}' parameter is required.")
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidParameter(name, f"The '{name}' parameter must be a non-negative integer.")
    return int(raw)


async def checkpoint(request: web.Request) -> web.Response:
    signed = await request.app[GATEWAY].checkpointer.latest()
    return web.Response(text=signed.served, content_type="text/plain", charset="utf-8")


async def key(request: web.Request) -> web.Response:
    return web.Response(text=request.app[GATEWAY].checkpointer.verifier_key + "\n", content_type="text/plain")


async def keys(request: web.Request) -> web.Response:
    """The key history with validity windows, and this gateway's witness key if it is a witness."""
    gw = request.app[GATEWAY]
    async with reading(gw.engine) as conn:
        history = history_json(await load_keys(conn), gw.settings.audit.origin)
        witness = None
        if gw.settings.audit.witness_name:
            witness = (await conn.execute(select(tables.witness_key.c.verifier_key).where(
                tables.witness_key.c.name == gw.settings.audit.witness_name))).scalar()
    return web.json_response({**history, "witness": witness})


async def entries(request: web.Request) -> web.Response:
    require_scope(request, AUDIT_SCOPE)
    start, end = int_param(request, "start"), int_param(request, "end")
    rows = await request.app[READER].rows(start, end)
    return web.json_response({"entries": [
        {"index": i, "leaf": b64(leaf)} if leaf is not None else {"index": i, "leaf": None, "leaf_hash": b64(h)}
        for i, leaf, h in rows
    ]})


async def inclusion(request: web.Request) -> web.Response:
    require_scope(request, AUDIT_SCOPE)
    index, size = int_param(request, "index"), int_param(request, "tree_size")
    hashes = await request.app[READER].inclusion(index, size)
    return web.json_response({"index": index, "tree_size": size, "hashes": [b64(h) for h in hashes]})


async def consistency(request: web.Request) -> web.Response:
    require_scope(request, AUDIT_SCOPE)
    first, second = int_param(request, "first"), int_param(request, "second")
    hashes = await request.app[READER].consistency(first, second)
    return web.json_response({"first": first, "second": second, "hashes": [b64(h) for h in hashes]})


async def search(request: web.Request) -> web.Response:
    require_scope(request, AUDIT_SCOPE)
    query = parse_search(request.query)
    hits, following = await request.app[READER].search(query)
    body = {"entries": [{"index": i, "entry": e} for i, e in hits],
            "next": following}
    return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))


async def add_checkpoint(request: web.Request) -> web.Response:
    """C2SP tlog-witness add-checkpoint: cosignature lines, or the spec's status and body."""
    service = request.app.get(WITNESS)
    if service is None:
        return web.Response(status=404, text="this gateway is not a witness\n")
    if (request.content_length or 0) > MAX_BODY:
        return web.Response(status=400, text=f"the request body is larger than {MAX_BODY} bytes\n")
    try:
        lines = await service.add_checkpoint(await request.read())
    except WitnessError as exc:
        return web.Response(status=exc.status, body=exc.body.encode(), content_type=exc.content_type)
    return web.Response(text=lines, content_type="text/plain", charset="utf-8")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/audit/checkpoint", checkpoint),
        web.get("/audit/key", key),
        web.get("/audit/keys", keys),
        web.get("/audit/entries", entries),
        web.get("/audit/proof/inclusion", inclusion),
        web.get("/audit/proof/consistency", consistency),
        web.get("/audit/search", search),
        web.post("/witness/add-checkpoint", add_checkpoint),
    ]
