"""Admin API (scope `admin`) and the admin actions behind it, the CLI, the demo and the
over-scope guard.

Rules:
1. Every admin change is an audit entry, appended before the change is applied: if the audit
   log cannot record it, the action is refused (503) and nothing changes.
2. Input is validated whole before anything is written or audited: a bad licence is a 400
   naming the field, and nothing is stored.
3. An action reaches every gateway process through the database (policy version, token
   revocation); the process that made it applies it at once.
4. There is one code path per action. The API, `credgate admin ...` (gateway/offline.py) and the
   automatic suspension (gateway/overscope.py) all call the functions below with an
   `AdminContext`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from credcore.clock import Clock, rfc3339
from credcore.codes import is_valid_uscc
from credcore.errors import BadRequest, CredgateError, InvalidParameter, NotFound
from gateway.auth import require_scope
from gateway.licensing import Licensing
from gateway.oauth import OAuthService
from gateway.oauth.registration import check_client_id, check_name
from gateway.release import AuditSink
from gateway.services import GATEWAY, Services
from policies.licence import Licence, check_licence_id, parse_licence
from policies.store import LicenceRow, LicenceStore

ADMIN_SCOPE = "admin"
MAX_REASON = 500


class Conflict(CredgateError):
    status = 409
    code = "conflict"


@dataclass
class AdminContext:
    oauth: OAuthService
    store: LicenceStore
    audit: AuditSink
    clock: Clock
    licensing: Licensing | None = None  # this process's runtime, refreshed at once after a change

    @classmethod
    def of(cls, gw: Services | AdminContext) -> AdminContext:
        if isinstance(gw, AdminContext):
            return gw
        return cls(gw.oauth, gw.licence_store, gw.audit, gw.clock, gw.licensing)

    async def refresh(self) -> None:
        if self.licensing is not None:
            await self.licensing.reload()


async def audit_admin(
    sink: AuditSink, clock: Clock, actor: str | None, action: str, target: str, details: dict[str, Any],
    *, status: int = 200,
) -> int:
    entry: dict[str, Any] = {
        "kind": "admin",
        "time": rfc3339(clock.now()),
        "client_id": actor,
        "action": action,
        "target": target,
        "details": details,
        "uscc": [],
        "decision": "allow",
        "status": status,
    }
    return await asyncio.shield(sink.append(entry))


def _reason(raw: Any, default: str | None = None) -> str:
    if raw is None and default is not None:
        return default
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidParameter("reason", "A 'reason' (a non-empty string) is required.")
    return raw.strip()[:MAX_REASON]


# --- actions ---------------------------------------------------------------------------------

async def provision_operator(
    gw: Services | AdminContext, *, name: str, scope: str = "data:read", licence: dict[str, Any] | None = None,
    licence_id: str | None = None, client_id: str | None = None, client_secret: str | None = None,
    org_uscc: str | None = None, actor: str | None = None,
) -> tuple[str, str | None]:
    """Create (or re-provision) an OAuth client and its operator record, and optionally a licence.

    Idempotent for the demo: an existing client is kept, an identical licence is not rewritten,
    and a revoked licence is never brought back.
    """
    ctx = AdminContext.of(gw)
    check_name(name)
    if client_id is not None:
        check_client_id(client_id)
    if org_uscc is not None and not is_valid_uscc(org_uscc):
        raise InvalidParameter("org_uscc", "'org_uscc' is not a valid Unified Social Credit Code.")
    if licence is not None:  # validate everything before anything is written or audited
        parse_licence(licence, licence_id=licence_id or "check", client_id=client_id or "check")
    existing = await ctx.oauth.get_client(client_id) if client_id else None
    if existing is not None:
        cid, secret = existing.client_id, client_secret
    else:
        await audit_admin(ctx.audit, ctx.clock, actor, "create_client", client_id or "(new)",
                          {"name": name, "scope": scope}, status=201)
        cid, secret = await ctx.oauth.create_client(
            name=name, scope=scope, client_id=client_id, client_secret=client_secret
        )
    if "data:read" in scope.split():
        current = await ctx.store.operator(cid)
        if current is None or current["name"] != name or current["org_uscc"] != org_uscc:
            await audit_admin(ctx.audit, ctx.clock, actor, "put_operator", cid, {"name": name, "org_uscc": org_uscc})
            await ctx.store.upsert_operator(cid, name=name, org_uscc=org_uscc, now=ctx.clock.now())
        if licence is not None:
            lid = licence_id or f"{cid}-1"
            stored = await ctx.store.licence(lid)
            wanted = parse_licence(licence, licence_id=lid, client_id=cid)
            if stored is None or (stored.licence != wanted and not _revoked(stored)):
                await put_licence(ctx, cid, lid, licence, actor=actor)
    await ctx.refresh()
    return cid, secret


def _revoked(row: LicenceRow) -> bool:
    return row.licence is not None and row.licence.status == "revoked"


async def create_operator(
    ctx: AdminContext, *, name: str, org_uscc: str | None, client_id: str | None,
    licence: dict[str, Any] | None, licence_id: str | None, actor: str | None,
) -> dict[str, Any]:
    """A new operator: its OAuth client (scope data:read), its record and optionally its first licence."""
    if client_id is not None and await ctx.oauth.get_client(client_id) is not None:
        raise Conflict(f"A client '{client_id}' already exists.")
    if licence_id is not None:
        check_licence_id(licence_id)
        if await ctx.store.licence(licence_id) is not None:
            raise Conflict(f"A licence '{licence_id}' already exists.")
    cid, secret = await provision_operator(
        ctx, name=name, org_uscc=org_uscc, client_id=client_id, licence=licence, licence_id=licence_id, actor=actor
    )
    return {"client_id": cid, "client_secret": secret, **({"licence_id": licence_id or f"{cid}-1"} if licence else {})}


async def _require_operator(ctx: AdminContext, client_id: str) -> dict[str, Any]:
    operator = await ctx.store.operator(client_id)
    if operator is None:
        raise NotFound(f"No operator '{client_id}'.")
    return operator


async def put_licence(ctx_or_gw: Services | AdminContext, client_id: str, licence_id: str, body: Any,
                      *, actor: str | None) -> dict[str, Any]:
    """Create or replace a licence of an operator; answers the stored licence and whether it is new."""
    ctx = AdminContext.of(ctx_or_gw)
    parsed = parse_licence(body, licence_id=licence_id, client_id=client_id)  # 400 naming the field
    await _require_operator(ctx, client_id)
    stored = await ctx.store.licence(licence_id)
    if stored is not None and stored.client_id != client_id:
        raise Conflict(f"The licence '{licence_id}' belongs to another operator.")
    if stored is not None and _revoked(stored):
        raise Conflict(f"The licence '{licence_id}' is revoked; issue a new licence id.")
    action = "put_licence" if stored is None else "replace_licence"
    await audit_admin(ctx.audit, ctx.clock, actor, action, client_id, parsed.to_json(),
                      status=201 if stored is None else 200)
    created = await ctx.store.put_licence(parsed, ctx.clock.now())
    await ctx.refresh()
    return {**licence_view(parsed, ctx.clock), "created": created}


async def revoke_licence(
    ctx: AdminContext, client_id: str, licence_id: str, reason: str, *, actor: str | None
) -> dict[str, Any]:
    stored = await ctx.store.licence(licence_id)
    if stored is None or stored.client_id != client_id:
        raise NotFound(f"No licence '{licence_id}' of operator '{client_id}'.")
    await audit_admin(ctx.audit, ctx.clock, actor, "revoke_licence", client_id,
                      {"licence_id": licence_id, "reason": reason})
    revoked = await ctx.store.set_licence_status(licence_id, "revoked", ctx.clock.now())
    if revoked is None:
        raise NotFound(f"The licence '{licence_id}' does not parse; fix or replace it first.")
    await ctx.refresh()
    return licence_view(revoked, ctx.clock)


async def set_suspended(gw: Services | AdminContext, client_id: str, suspended: bool, reason: str,
                        *, actor: str | None, details: dict[str, Any] | None = None) -> int:
    """Suspend or resume a client (an operator, or any other OAuth client); revokes all its tokens.

    Answers the index of the audit entry. Suspending bites on this process at once and on every
    other process at its next poll; resuming also revokes tokens, so new ones must be requested.
    """
    ctx = AdminContext.of(gw)
    if await ctx.oauth.get_client(client_id) is None:
        raise NotFound(f"No operator '{client_id}'.")
    index = await audit_admin(ctx.audit, ctx.clock, actor, "suspend" if suspended else "resume", client_id,
                              {"reason": reason, **(details or {})})
    status = "suspended" if suspended else "active"
    if ctx.licensing is not None and suspended:
        ctx.licensing.mark_suspended(client_id, True)  # this process refuses from now on
    await ctx.store.set_operator_status(client_id, status, reason, ctx.clock.now())
    await ctx.oauth.set_client_status(client_id, status)
    await ctx.oauth.revoke_all_tokens(client_id)
    if ctx.licensing is not None and not suspended:
        ctx.licensing.mark_suspended(client_id, False)
    await ctx.refresh()
    return index


async def revoke_tokens(ctx: AdminContext, client_id: str, reason: str, *, actor: str | None) -> int:
    if await ctx.oauth.get_client(client_id) is None:
        raise NotFound(f"No client '{client_id}'.")
    index = await audit_admin(ctx.audit, ctx.clock, actor, "revoke_tokens", client_id, {"reason": reason})
    await ctx.oauth.revoke_all_tokens(client_id)
    return index


def licence_view(licence: Licence, clock: Clock) -> dict[str, Any]:
    now = clock.now()
    return {**licence.to_json(), "status": licence.effective_status(now), "in_force": licence.in_force(now)}


async def operator_view(ctx: AdminContext, client_id: str) -> dict[str, Any]:
    operator = await _require_operator(ctx, client_id)
    rows = await ctx.store.licences_of(client_id)
    return {
        "client_id": client_id,
        "name": operator["name"],
        "org_uscc": operator["org_uscc"],
        "status": operator["status"],
        "reason": operator["reason"],
        "licences": [
            licence_view(row.licence, ctx.clock) if row.licence else {"licence_id": row.licence_id, "status": "invalid"}
            for row in rows
        ],
    }


# --- HTTP ------------------------------------------------------------------------------------

async def _json_body(request: web.Request, *, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if allowed is not None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidParameter(unknown[0], f"'{unknown[0]}' is not a known member here.")
    return body


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _ctx(request: web.Request) -> AdminContext:
    return AdminContext.of(request.app[GATEWAY])


def _int_query(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise InvalidParameter(name, f"The '{name}' parameter must be an integer from 0 to {maximum}.")
    return int(raw)


async def suspend(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request, allowed=frozenset({"reason"}))
    client_id = request.match_info["client_id"]
    index = await set_suspended(_ctx(request), client_id, True, _reason(body.get("reason")), actor=claims.client_id)
    return _json({"client_id": client_id, "status": "suspended", "audit_entry": index})


async def resume(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request, allowed=frozenset({"reason"}))
    client_id = request.match_info["client_id"]
    index = await set_suspended(_ctx(request), client_id, False, _reason(body.get("reason"), "resumed"),
                                actor=claims.client_id)
    return _json({"client_id": client_id, "status": "active", "audit_entry": index})


async def tokens_revoke(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request, allowed=frozenset({"reason"}))
    client_id = request.match_info["client_id"]
    index = await revoke_tokens(_ctx(request), client_id, _reason(body.get("reason"), "tokens revoked"),
                                actor=claims.client_id)
    return _json({"client_id": client_id, "tokens": "revoked", "audit_entry": index})


async def operator_create(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request, allowed=frozenset({"name", "org_uscc", "client_id", "licence", "licence_id"}))
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter("name", "An operator needs a 'name'.")
    for key in ("org_uscc", "client_id", "licence_id"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise InvalidParameter(key, f"'{key}' must be a string.")
    result = await create_operator(
        _ctx(request), name=name.strip(), org_uscc=body.get("org_uscc"), client_id=body.get("client_id"),
        licence=body.get("licence"), licence_id=body.get("licence_id"), actor=claims.client_id,
    )
    return _json(result, status=201)


async def operator_list(request: web.Request) -> web.Response:
    require_scope(request, ADMIN_SCOPE)
    limit = _int_query(request, "limit", 100, 1000) or 100
    rows = await _ctx(request).store.list_operators(after=request.query.get("after", ""), limit=limit + 1)
    page = [{"client_id": r["client_id"], "name": r["name"], "org_uscc": r["org_uscc"], "status": r["status"]}
            for r in rows[:limit]]
    return _json({"operators": page, "next": page[-1]["client_id"] if len(rows) > limit else None})


async def operator_get(request: web.Request) -> web.Response:
    require_scope(request, ADMIN_SCOPE)
    return _json(await operator_view(_ctx(request), request.match_info["client_id"]))


async def licence_put(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request)
    result = await put_licence(_ctx(request), request.match_info["client_id"], request.match_info["licence_id"], body,
                               actor=claims.client_id)
    return _json(result, status=201 if result["created"] else 200)


async def licence_get(request: web.Request) -> web.Response:
    require_scope(request, ADMIN_SCOPE)
    ctx = _ctx(request)
    client_id, licence_id = request.match_info["client_id"], request.match_info["licence_id"]
    row = await ctx.store.licence(licence_id)
    if row is None or row.client_id != client_id:
        raise NotFound(f"No licence '{licence_id}' of operator '{client_id}'.")
    if row.licence is None:
        return _json({"licence_id": licence_id, "client_id": client_id, "status": "invalid"})
    return _json(licence_view(row.licence, ctx.clock))


async def licence_revoke(request: web.Request) -> web.Response:
    claims = require_scope(request, ADMIN_SCOPE)
    body = await _json_body(request, allowed=frozenset({"reason"}))
    result = await revoke_licence(_ctx(request), request.match_info["client_id"], request.match_info["licence_id"],
                                  _reason(body.get("reason")), actor=claims.client_id)
    return _json(result)


async def incident_list(request: web.Request) -> web.Response:
    require_scope(request, ADMIN_SCOPE)
    limit = _int_query(request, "limit", 100, 1000) or 100
    after = _int_query(request, "after", 0, 2**62)
    rows = await _ctx(request).store.incidents(client_id=request.query.get("client_id") or None, after=after,
                                               limit=limit + 1)
    page = rows[:limit]
    return _json({"incidents": page, "next": str(page[-1]["id"]) if len(rows) > limit else None})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/admin/operators", operator_create),
        web.get("/admin/operators", operator_list),
        web.get("/admin/operators/{client_id}", operator_get),
        web.post("/admin/operators/{client_id}/suspend", suspend),
        web.post("/admin/operators/{client_id}/resume", resume),
        web.post("/admin/operators/{client_id}/revoke-tokens", tokens_revoke),
        web.put("/admin/operators/{client_id}/licences/{licence_id}", licence_put),
        web.get("/admin/operators/{client_id}/licences/{licence_id}", licence_get),
        web.post("/admin/operators/{client_id}/licences/{licence_id}/revoke", licence_revoke),
        web.get("/admin/incidents", incident_list),
    ]
