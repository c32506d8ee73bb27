"""Admin actions straight on the database, for `credgate admin ...` when no gateway is at hand.

They are the admin API's own functions (gateway/admin.py) run with an `AdminContext` over the
database: audited first, then applied, with the same validation. Every running gateway process
picks them up at its next poll (< 1 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from audit.writer import AuditWriter
from credcore.clock import Clock, system_clock
from credcore.db import make_engine
from credcore.errors import InvalidParameter
from gateway import admin
from gateway.admin import AdminContext
from gateway.oauth import OAuthService
from policies.store import LicenceStore

ACTOR = "credgate-cli"


@contextlib.asynccontextmanager
async def admin_context(db_url: str, clock: Clock = system_clock) -> AsyncIterator[AdminContext]:
    engine = make_engine(db_url)
    oauth = OAuthService(engine, issuer="offline", audience="offline", clock=clock)
    store = LicenceStore(engine)
    writer = AuditWriter(engine)
    try:
        await oauth.start()
        await store.start()
        await writer.start()
        yield AdminContext(oauth, store, writer, clock)
    finally:
        await writer.close()
        await engine.dispose()


async def admin_action(db_url: str, action: str, client_id: str, reason: str, *, clock: Clock = system_clock) -> int:
    """suspend | resume | revoke-tokens; answers the index of the audit entry."""
    async with admin_context(db_url, clock) as ctx:
        if action == "revoke-tokens":
            return await admin.revoke_tokens(ctx, client_id, reason, actor=ACTOR)
        if action not in ("suspend", "resume"):
            raise ValueError(f"unknown admin action {action!r}")
        return await admin.set_suspended(ctx, client_id, action == "suspend", reason, actor=ACTOR)


async def licence_put(
    db_url: str, client_id: str, licence_id: str, body: Any, *, clock: Clock = system_clock
) -> dict[str, Any]:
    async with admin_context(db_url, clock) as ctx:
        return await admin.put_licence(ctx, client_id, licence_id, body, actor=ACTOR)


async def licence_revoke(db_url: str, client_id: str, licence_id: str, reason: str,
                         *, clock: Clock = system_clock) -> dict[str, Any]:
    async with admin_context(db_url, clock) as ctx:
        return await admin.revoke_licence(ctx, client_id, licence_id, reason, actor=ACTOR)


async def operator_show(db_url: str, client_id: str, *, clock: Clock = system_clock) -> dict[str, Any]:
    async with admin_context(db_url, clock) as ctx:
        return await admin.operator_view(ctx, client_id)


async def operator_create(db_url: str, *, name: str, client_id: str | None, org_uscc: str | None,
                          licence: Any, licence_id: str | None, clock: Clock = system_clock) -> dict[str, Any]:
    async with admin_context(db_url, clock) as ctx:
        return await admin.create_operator(ctx, name=name, org_uscc=org_uscc, client_id=client_id, licence=licence,
                                           licence_id=licence_id, actor=ACTOR)


async def incidents(db_url: str, client_id: str | None, *, clock: Clock = system_clock) -> list[dict[str, Any]]:
    async with admin_context(db_url, clock) as ctx:
        return await ctx.store.incidents(client_id=client_id, limit=1000)


async def client_create(db_url: str, *, name: str, scope: str, client_id: str | None,
                        clock: Clock = system_clock) -> dict[str, Any]:
    """An OAuth client for staff (scopes `admin`, `audit:read`): how a new deployment gets its
    first admin, who then manages everything else through the admin API."""
    allowed = {"admin", "audit:read"}
    unknown = sorted(set(scope.split()) - allowed)
    if not scope.split() or unknown:
        raise InvalidParameter(
            "scope", f"a staff client's scope is 'admin' and/or 'audit:read', not {unknown or scope!r}."
        )
    async with admin_context(db_url, clock) as ctx:
        cid, secret = await admin.provision_operator(ctx, name=name, scope=scope, client_id=client_id, actor=ACTOR)
        return {"client_id": cid, "client_secret": secret, "scope": scope}
