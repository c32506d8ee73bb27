"""The audit endpoints of CONTRACTS section 4. Only the checkpoint and the key are public;
everything else needs an `audit:read` token (operators get 403)."""

from __future__ import annotations

import datetime as dt
import json

from aiohttp import web

from audit.reader import AuditReader, SearchQuery, b64
from credcore.codes import validate_uscc
from credcore.errors import InvalidParameter
from gateway.auth import require_scope
from gateway.services import GATEWAY

AUDIT_SCOPE = "audit:read"
READER = web.AppKey("audit_reader", AuditReader)


def int_param(request: web.Request, name: str, *, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidParameter(name, f"The '{name}' parameter is required.")
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidParameter(name, f"The '{name}' parameter must be a non-negative integer.")
    return int(raw)


def time_param(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(name, f"The '{name}' parameter must be an RFC 3339 time.") from exc
    if value.tzinfo is None:
        raise InvalidParameter(name, f"The '{name}' parameter must carry a timezone offset.")
    return value


async def checkpoint(request: web.Request) -> web.Response:
    signed = await request.app[GATEWAY].checkpointer.latest()
    return web.Response(text=signed.note, content_type="text/plain", charset="utf-8")


async def key(request: web.Request) -> web.Response:
    return web.Response(text=request.app[GATEWAY].checkpointer.verifier_key + "\n", content_type="text/plain")


async def entries(request: web.Request) -> web.Response:
    require_scope(request, AUDIT_SCOPE)
    start, end = int_param(request, "start"), int_param(request, "end")
    rows = await request.app[READER].leaves(start, end)
    return web.json_response({"entries": [{"index": i, "leaf": b64(leaf or b"")} for i, leaf in rows]})


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
    uscc = request.query.get("uscc") or None
    if uscc is not None:
        try:
            validate_uscc(uscc)
        except Exception as exc:
            raise InvalidParameter("uscc", "The 'uscc' parameter is not a valid credit code.") from exc
    decision = request.query.get("decision") or None
    if decision not in (None, "allow", "deny", "error"):
        raise InvalidParameter("decision", "The 'decision' parameter must be allow, deny or error.")
    cursor = request.query.get("cursor") or ""
    query = SearchQuery(
        operator=request.query.get("operator") or None,
        uscc=uscc,
        decision=decision,
        since=time_param(request, "since"),
        until=time_param(request, "until"),
        after=int(cursor) if cursor.isascii() and cursor.isdigit() else -1,
    )
    if cursor and not (cursor.isascii() and cursor.isdigit()):
        raise InvalidParameter("cursor", "The 'cursor' parameter is malformed.")
    hits, following = await request.app[READER].search(query)
    return web.json_response(
        {"entries": [{"index": i, "entry": e} for i, e in hits], "next": str(following) if following is not None else None},
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/audit/checkpoint", checkpoint),
        web.get("/audit/key", key),
        web.get("/audit/entries", entries),
        web.get("/audit/proof/inclusion", inclusion),
        web.get("/audit/proof/consistency", consistency),
        web.get("/audit/search", search),
    ]
