"""Our region's Ed25519 signing keys, kept in the database (`crosstab_signing_keys`).

The newest unretired key signs; retired keys stay published in jwks.json so that partners can
still re-verify records signed before a rotation. A key's id is the region code and the start
of its RFC 7638 thumbprint, so that a kid names one key for good.

A database belongs to one region: finding another region's key in it is a ConfigError, so a
config typo cannot make a gateway sign as a region it is not. Creating the first key takes the
outbox counter's row lock (PostgreSQL) or the write lock (SQLite, BEGIN IMMEDIATE), so two
processes starting together end up with one key, not two.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from credcore.clock import Clock
from credcore.db import reading
from credcore.errors import ConfigError
from crosstab import _jose
from crosstab import tables as t
from crosstab.outbox import Signer
from crosstab.store import ensure_counter_row


@dataclass(frozen=True)
class KeyRing:
    """The key we sign with and the public keys we still publish after rotations."""

    signer: Signer
    retired: tuple[dict[str, Any], ...]


def new_kid(region: str, key: OKPKey) -> str:
    return f"{region}-{key.thumbprint()[:16]}"


async def _lock(conn: AsyncConnection) -> None:
    """Serialise key changes on the outbox counter row, held to commit. The row must exist
    (`ensure_counter_row`, committed before): creating it here, two processes starting together
    on a new PostgreSQL database both found no row to lock and the second one's insert failed
    on the primary key, so that gateway did not start."""
    moved = await conn.execute(
        update(t.outbox_seq).where(t.outbox_seq.c.id == 1).values(last_seq=t.outbox_seq.c.last_seq)
    )
    if moved.rowcount != 1:
        raise ConfigError("the crosstab outbox counter row is missing; restart to recreate it.")


async def _rows(conn: AsyncConnection) -> list[Any]:
    query = select(t.signing_keys).order_by(t.signing_keys.c.created_at, t.signing_keys.c.kid)
    return list((await conn.execute(query)).all())


def _ring(region: str, rows: list[Any]) -> KeyRing:
    foreign = sorted({row.region for row in rows if row.region != region})
    if foreign:
        raise ConfigError(
            f"setting 'crosstab.region' is {region}, but this database signs for region {foreign[0]}."
        )
    active = [row for row in rows if row.retired_at is None]
    if not active:
        raise ConfigError(f"no active crosstab signing key for region {region}.")
    current = active[-1]
    signer = Signer.from_jwk(region, current.kid, json.loads(current.private_jwk))
    retired = tuple(
        _jose.public_jwk(_jose.import_private_key(json.loads(row.private_jwk)), row.kid)
        for row in reversed(rows)
        if row.kid != current.kid
    )
    return KeyRing(signer, retired)


async def _insert_key(conn: AsyncConnection, region: str, now: dt.datetime) -> None:
    key = OKPKey.generate_key("Ed25519", private=True)
    await conn.execute(
        insert(t.signing_keys).values(
            kid=new_kid(region, key),
            region=region,
            private_jwk=json.dumps(key.as_dict(private=True), sort_keys=True),
            created_at=now.astimezone(dt.UTC),
            retired_at=None,
        )
    )


async def load_or_create_keys(engine: AsyncEngine, region: str, clock: Clock) -> KeyRing:
    """Our key ring, creating the first key at first start."""
    await ensure_counter_row(engine, t.outbox_seq, "id", 1)
    async with engine.begin() as conn:
        rows = await _rows(conn)
        if not any(row.retired_at is None for row in rows):
            await _lock(conn)
            rows = await _rows(conn)  # another process may have created it meanwhile
            if not any(row.retired_at is None for row in rows):
                _ring_check_foreign(region, rows)
                await _insert_key(conn, region, clock.now())
                rows = await _rows(conn)
    return _ring(region, rows)


def _ring_check_foreign(region: str, rows: list[Any]) -> None:
    if any(row.region != region for row in rows):
        _ring(region, rows)  # raises the ConfigError naming the other region


async def rotate_key(engine: AsyncEngine, region: str, clock: Clock) -> KeyRing:
    """Retire the current key and create a new one; running gateways pick it up on restart."""
    await ensure_counter_row(engine, t.outbox_seq, "id", 1)
    async with engine.begin() as conn:
        await _lock(conn)
        rows = await _rows(conn)
        _ring_check_foreign(region, rows)
        now = clock.now().astimezone(dt.UTC)
        await conn.execute(
            update(t.signing_keys).where(t.signing_keys.c.retired_at.is_(None)).values(retired_at=now)
        )
        await _insert_key(conn, region, now)
        rows = await _rows(conn)
    return _ring(region, rows)


async def database_region(engine: AsyncEngine) -> str | None:
    """The region this database signs for, or None before the first start."""
    async with reading(engine) as conn:
        return await conn.scalar(select(t.signing_keys.c.region).limit(1))
