"""Admin API (scope `admin`) and the provisioning used by it, the CLI and the demo.

Every admin action is an audit entry, written before the change is applied: if the audit log
cannot record it, the action is refused (503) and nothing changes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from credcore.clock import Clock, rfc3339
from credcore.codes import is_valid_uscc
from credcore.errors import BadRequest, InvalidParameter, NotFound
from gateway.auth import require_scope
from gateway.release import AuditSink
from gateway.services import GATEWAY, Services
from policies.licence import parse_licence

ADMIN_SCOPE = "admin"


async def audit_admin(
    sink: AuditSink, clock: Clock, actor: str | None, action: str, target: str, details: dict[str, Any]
) -> int:
    entry = {
        "kind": "admin",
        "time": rfc3339(clock.now()),
        "client_id": actor,
        "action": action,
        "target": target,
        "details": details,
        "uscc": [],
        "decision": "allow",
        "status": 200,
    }
    return await asyncio.shield(sink.append(entry))


async def provision_operator(
    gw: Services, *, name: str, scope: str = "data:read", licence: dict[str, Any] | None = None,
    licence_id: str | None = None, client_id: str | None = None, client_secret: str | None = None,
    org_uscc: str | None = None, actor: str | None = None,
) -> tuple[str, str | None]:
    """Create an OAuth client and its operator record, and optionally its first licence."""
    if org_uscc is not None and not is_valid_uscc(org_uscc):
        raise InvalidParameter("org_uscc", "'org_uscc' is not a valid Unified Social Credit Code.")
    existing = await gw.oauth.get_client(client_id) if client_id else None
    if existing is not None:
        cid, secret = client_id or "", client_secret
    else:
        await audit_admin(gw.audit, gw.clock, actor, "create_client", client_id or "(new)", {"name": name, "scope": scope})
        cid, secret = await gw.oauth.create_client(name=name, scope=scope, client_id=client_id, client_secret=client_secret)
    if "data:read" in scope.split():
        await gw.licence_store.upsert_operator(cid, name=name, org_uscc=org_uscc, now=gw.clock.now())
        if licence is not None:
            await put_licence(gw, cid, licence_id or f"{cid}-1", licence, actor=actor)
    await gw.licensing.reload()
    return cid, secret


async def put_licence(gw: Services, client_id: str, licence_id: str, body: Any, *, actor: str | None) -> dict[str, Any]:
    parsed = parse_licence(body, licence_id=licence_id, client_id=client_id)  # 400 naming the field
    if await gw.licence_store.operator(client_id) is None:
        raise NotFound(f"No operator '{client_id}'.")
    await audit_admin(gw.audit, gw.clock, actor, "put_licence", client_id, parsed.to_json())
    await gw.licence_store.put_licence(parsed, gw.clock.now())
    await gw.licensing.reload()
    return parsed.to_json()


async def set_suspended(gw: Services, client_id: str, suspended: bool, reason: str, *, actor: str | None) -> None:
    if await gw.licence_store.operator(client_id) is None:
        raise NotFound(f"No operator '{client_id}'.")
    await audit_admin(gw.audit, gw.clock, actor, "suspend" if suspended else "resume", client_id, {"reason": reason})
    status = "suspended" if suspended else "active"
    await gw.licence_store.set_operator_status(client_id, status, reason, gw.clock.now())
    await gw.oauth.set_client_status(client_id, status)
    # Suspension revokes every token; resuming revokes them again, so new tokens must be requested.
    await gw.oauth.revoke_all_tokens(client_id)
    gw.licensing.mark_suspended(client_id, suspended)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


async def suspend(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidParameter("reason", "A suspension needs a 'reason'.")
    client_id = request.match_info["client_id"]
    await set_suspended(request.app[GATEWAY], client_id, True, reason.strip()[:500], actor=claims.client_id)
    return web.json_response({"client_id": client_id, "status": "suspended"})


async def resume(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request)
    reason = body.get("reason") if isinstance(body.get("reason"), str) else "resumed"
    client_id = request.match_info["client_id"]
    await set_suspended(request.app[GATEWAY], client_id, False, str(reason)[:500], actor=claims.client_id)
    return web.json_response({"client_id": client_id, "status": "active"})


async def create_operator(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter("name", "An operator needs a 'name'.")
    org = body.get("org_uscc")
    if org is not None and not isinstance(org, str):
        raise InvalidParameter("org_uscc", "'org_uscc' must be a string.")
    licence = body.get("licence")
    if licence is not None:
        parse_licence(licence, licence_id="check", client_id="check")  # validate before creating anything
    cid, secret = await provision_operator(
        request.app[GATEWAY], name=name.strip(), org_uscc=org, licence=licence, actor=claims.client_id
    )
    return web.json_response({"client_id": cid, "client_secret": secret}, status=201)


async def licence_put(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request)
    result = await put_licence(
        request.app[GATEWAY], request.match_info["client_id"], request.match_info["licence_id"], body,
        actor=claims.client_id,
    )
    return web.json_response(result)


async def operator_get(request: web.Request) -> web.Response:
    require_scope(request, ADMIN_SCOPE)
    gw = request.app[GATEWAY]
    client_id = request.match_info["client_id"]
    operator = await gw.licence_store.operator(client_id)
    if operator is None:
        raise NotFound(f"No operator '{client_id}'.")
    return web.json_response(
        {
            "client_id": client_id,
            "name": operator["name"],
            "org_uscc": operator["org_uscc"],
            "status": operator["status"],
            "reason": operator["reason"],
            "licences": await gw.licence_store.licences_of(client_id),
        },
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )


def routes() -> list[web.RouteDef]:
    return [
        web.post("/admin/operators", create_operator),
        web.get("/admin/operators/{client_id}", operator_get),
        web.post("/admin/operators/{client_id}/suspend", suspend),
        web.post("/admin/operators/{client_id}/resume", resume),
        web.put("/admin/operators/{client_id}/licences/{licence_id}", licence_put),
    ]
