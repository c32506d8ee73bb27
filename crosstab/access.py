"""Who a partner is on the wire, both ways (`crosstab_partner_clients`, `crosstab_partner_links`).

Inbound: a partner authenticates with the OAuth client made when it was registered; that
client's id is the only thing that gives a request a region (deny by default: a client with
the crosstab scopes but no row here is refused). One client per region; re-registering a
region replaces it. Outbound: our base URL and client at each partner, for sync.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.db import reading
from crosstab import tables as t
from crosstab.partner_http import Link


class PartnerAccess:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def client_region(self, client_id: str) -> str | None:
        async with reading(self.engine) as conn:
            return await conn.scalar(
                select(t.partner_clients.c.region).where(t.partner_clients.c.client_id == client_id)
            )

    async def client_of(self, region: str) -> str | None:
        async with reading(self.engine) as conn:
            return await conn.scalar(
                select(t.partner_clients.c.client_id).where(t.partner_clients.c.region == region)
            )

    async def set_client(self, region: str, client_id: str, now: dt.datetime) -> None:
        """Make `client_id` the region's only client (the old mapping goes in the same transaction)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.partner_clients).where(t.partner_clients.c.region == region))
            await conn.execute(
                insert(t.partner_clients).values(client_id=client_id, region=region, created_at=now.astimezone(dt.UTC))
            )

    async def drop_client(self, region: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.partner_clients).where(t.partner_clients.c.region == region))

    async def save_link(self, link: Link, now: dt.datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.partner_links).where(t.partner_links.c.region == link.region))
            await conn.execute(
                insert(t.partner_links).values(
                    region=link.region,
                    base_url=link.base_url,
                    client_id=link.client_id,
                    client_secret=link.client_secret,
                    updated_at=now.astimezone(dt.UTC),
                )
            )

    async def links(self, region: str | None = None) -> list[Link]:
        query = select(t.partner_links).order_by(t.partner_links.c.region)
        if region is not None:
            query = query.where(t.partner_links.c.region == region)
        async with reading(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        return [Link(r.region, r.base_url, r.client_id, r.client_secret) for r in rows]

    async def drop_link(self, region: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.partner_links).where(t.partner_links.c.region == region))
