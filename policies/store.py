"""Licences and operators in the database, with a policy version every process polls.

Every change bumps `policy_version` in the same transaction, so a gateway process that sees a
new version reloads a consistent snapshot. Licences are stored as validated JSON; they are
parsed again on load, so a row edited by hand cannot smuggle in an invalid licence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from credcore.errors import InvalidParameter
from policies.licence import Licence, parse_licence

log = logging.getLogger(__name__)

metadata = MetaData()

operators = Table(
    "operators",
    metadata,
    Column("client_id", String(200), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("org_uscc", String(18), nullable=True),
    Column("status", String(16), nullable=False),  # active | suspended
    Column("reason", Text, nullable=True),
    Column("updated_us", BigInteger, nullable=False),
)

licences = Table(
    "licences",
    metadata,
    Column("licence_id", String(100), primary_key=True),
    Column("client_id", String(200), nullable=False, index=True),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

policy_version = Table(
    "policy_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class Snapshot:
    version: int
    licences: tuple[Licence, ...]
    suspended: frozenset[str]


class LicenceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            if (await conn.execute(select(policy_version.c.version))).first() is None:
                await conn.execute(insert(policy_version).values(id=1, version=1))

    async def version(self) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(select(policy_version.c.version).where(policy_version.c.id == 1))).scalar_one())

    async def snapshot(self) -> Snapshot:
        async with self._engine.connect() as conn:
            version = int((await conn.execute(select(policy_version.c.version))).scalar_one())
            rows = (await conn.execute(select(licences.c.licence_id, licences.c.client_id, licences.c.body))).all()
            suspended = (await conn.execute(select(operators.c.client_id).where(operators.c.status == "suspended"))).all()
        parsed: list[Licence] = []
        for row in rows:
            try:
                parsed.append(parse_licence(json.loads(row.body), licence_id=row.licence_id, client_id=row.client_id))
            except (InvalidParameter, ValueError) as exc:
                # A row that no longer parses grants nothing (fail closed), but must be seen.
                log.error("licence %s is invalid and grants nothing: %s", row.licence_id, exc)
        return Snapshot(version, tuple(parsed), frozenset(row.client_id for row in suspended))

    @staticmethod
    async def _bump(conn: AsyncConnection) -> None:
        await conn.execute(update(policy_version).where(policy_version.c.id == 1).values(version=policy_version.c.version + 1))

    async def upsert_operator(self, client_id: str, *, name: str, org_uscc: str | None, now: dt.datetime) -> None:
        async with self._engine.begin() as conn:
            exists = (await conn.execute(select(operators.c.client_id).where(operators.c.client_id == client_id))).first()
            values = {"name": name, "org_uscc": org_uscc, "updated_us": int(now.timestamp() * 1e6)}
            if exists:
                await conn.execute(update(operators).where(operators.c.client_id == client_id).values(**values))
            else:
                await conn.execute(insert(operators).values(client_id=client_id, status="active", reason=None, **values))
            await self._bump(conn)

    async def set_operator_status(self, client_id: str, status: str, reason: str | None, now: dt.datetime) -> bool:
        """Suspend or resume; False when there is no such operator."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(operators)
                .where(operators.c.client_id == client_id)
                .values(status=status, reason=reason, updated_us=int(now.timestamp() * 1e6))
            )
            if result.rowcount == 0:
                return False
            await self._bump(conn)
            return True

    async def operator(self, client_id: str) -> dict[str, object] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(operators).where(operators.c.client_id == client_id))).first()
            return dict(row._mapping) if row else None

    async def put_licence(self, licence: Licence, now: dt.datetime) -> None:
        body = json.dumps(licence.terms(), ensure_ascii=False, sort_keys=True)
        stamp = int(now.timestamp() * 1e6)
        async with self._engine.begin() as conn:
            exists = (await conn.execute(select(licences.c.licence_id).where(licences.c.licence_id == licence.licence_id))).first()
            if exists:
                await conn.execute(
                    update(licences)
                    .where(licences.c.licence_id == licence.licence_id)
                    .values(client_id=licence.client_id, body=body, status=licence.status, updated_us=stamp)
                )
            else:
                await conn.execute(
                    insert(licences).values(
                        licence_id=licence.licence_id, client_id=licence.client_id, body=body,
                        status=licence.status, updated_us=stamp,
                    )
                )
            await self._bump(conn)

    async def licences_of(self, client_id: str) -> list[dict[str, object]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(licences.c.body).where(licences.c.client_id == client_id))).all()
        return [json.loads(row.body) for row in rows]
