"""Admin actions straight on the database, for `credgate admin ...` when no gateway is at hand.

They go through the same functions as the admin API (audited first, then applied); every
running gateway process picks them up on its next poll (< 1 s).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from audit.writer import AuditWriter
from credcore.clock import Clock, system_clock
from credcore.db import make_engine
from credcore.errors import NotFound
from gateway.admin import audit_admin
from gateway.oauth import OAuthService
from policies.store import LicenceStore


@contextlib.asynccontextmanager
async def _parts(db_url: str, clock: Clock) -> AsyncIterator[tuple[OAuthService, LicenceStore, AuditWriter]]:
    engine = make_engine(db_url)
    oauth = OAuthService(engine, issuer="offline", audience="offline", clock=clock)
    store = LicenceStore(engine)
    writer = AuditWriter(engine)
    try:
        await oauth.start()
        await store.start()
        await writer.start()
        yield oauth, store, writer
    finally:
        await writer.close()
        await engine.dispose()


async def admin_action(db_url: str, action: str, client_id: str, reason: str, *, clock: Clock = system_clock) -> None:
    async with _parts(db_url, clock) as (oauth, store, writer):
        if await oauth.get_client(client_id) is None:
            raise NotFound(f"no client '{client_id}' in {db_url}.")
        is_operator = await store.operator(client_id) is not None
        await audit_admin(writer, clock, "credgate-cli", action, client_id, {"reason": reason})
        if action in ("suspend", "resume"):
            status = "suspended" if action == "suspend" else "active"
            if is_operator:
                await store.set_operator_status(client_id, status, reason, clock.now())
            await oauth.set_client_status(client_id, status)
        await oauth.revoke_all_tokens(client_id)
