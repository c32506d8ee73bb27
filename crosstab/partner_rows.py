"""Partners in SQL: the trust registry's rows (`crosstab_partners`, `crosstab_partner_keys`).

Functions over an open connection, so the store decides the transaction. A partner is always
written whole (its row and its complete key list in one transaction): a rotation replaces the
key list, never edits one key in place, so no reader sees a partner with half its keys. Key
windows are stored as epoch seconds, which both SQLite and PostgreSQL compare exactly.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crosstab import tables as t
from crosstab.trust import Partner, PartnerKey


def _epoch(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _from_epoch(value: int | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


async def delete_partner(conn: AsyncConnection, region: str) -> bool:
    """Remove a partner and its keys; True if it existed."""
    await conn.execute(delete(t.partner_keys).where(t.partner_keys.c.region == region))
    result = await conn.execute(delete(t.partners).where(t.partners.c.region == region))
    return bool(result.rowcount)


async def write_partner(conn: AsyncConnection, partner: Partner) -> None:
    """Insert or replace a partner with its whole key list."""
    await delete_partner(conn, partner.region)
    await conn.execute(
        insert(t.partners).values(
            region=partner.region,
            name=partner.name,
            record_types=" ".join(sorted(partner.record_types)),
            outbox_url=partner.outbox_url,
            inbox_url=partner.inbox_url,
            domestic=partner.domestic,
        )
    )
    for key in partner.keys:
        await conn.execute(
            insert(t.partner_keys).values(
                region=partner.region,
                kid=key.kid,
                jwk=json.dumps(key.jwk, sort_keys=True),
                valid_from=_epoch(key.valid_from),
                valid_until=_epoch(key.valid_until),
            )
        )


async def read_partners(conn: AsyncConnection, region: str | None = None) -> list[Partner]:
    """Every partner (or the one with `region`), ordered by region code."""
    partners = select(t.partners).order_by(t.partners.c.region)
    keys = select(t.partner_keys).order_by(t.partner_keys.c.region, t.partner_keys.c.kid)
    if region is not None:
        partners = partners.where(t.partners.c.region == region)
        keys = keys.where(t.partner_keys.c.region == region)
    rows = (await conn.execute(partners)).all()
    by_region: dict[str, list[PartnerKey]] = {}
    for k in await conn.execute(keys):
        by_region.setdefault(k.region, []).append(
            PartnerKey(
                kid=k.kid,
                jwk=json.loads(k.jwk),
                valid_from=_from_epoch(k.valid_from),
                valid_until=_from_epoch(k.valid_until),
            )
        )
    return [
        Partner(
            region=r.region,
            name=r.name,
            keys=tuple(by_region.get(r.region, ())),
            record_types=frozenset(r.record_types.split()),
            outbox_url=r.outbox_url,
            inbox_url=r.inbox_url,
            domestic=bool(r.domestic),
        )
        for r in rows
    ]
