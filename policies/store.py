"""Licences, operators and incidents in the database, with a policy version every process polls.

Every change bumps `policy_version` and stamps the rows it touches with the new version
(`revision`) in the same transaction. The bump locks the version row, so writers are serialised
and commit in version order; a gateway process that has applied version V reloads only the rows
with `revision > V` (`changes`). It reads the version before the rows: a row committed in
between is applied early and read once more at the next poll, never missed.

Licences are stored as validated JSON and parsed again on load, so a row edited by hand cannot
smuggle in an invalid licence (it grants nothing and is logged).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from credcore.db import create_schema, reading
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
    Column("revision", BigInteger, nullable=False, server_default="0", index=True),
)

licences = Table(
    "licences",
    metadata,
    Column("licence_id", String(100), primary_key=True),
    Column("client_id", String(200), nullable=False, index=True),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False, server_default="0", index=True),
)

policy_version = Table(
    "policy_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(200), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False),  # JSON: the counts, window and thresholds that tripped
    Column("action", String(32), nullable=False),
    Column("audit_index", BigInteger, nullable=True),
    Column("created_us", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class LicenceRow:
    licence_id: str
    client_id: str
    licence: Licence | None  # None: the stored body no longer parses, so it grants nothing


@dataclass(frozen=True)
class Changes:
    version: int
    full: bool  # everything is listed (first load, or the database went back in time)
    licences: tuple[LicenceRow, ...]
    operators: tuple[tuple[str, str], ...]  # (client_id, status)


def _us(now: dt.datetime) -> int:
    return int(now.timestamp() * 1e6)


def _parse_row(licence_id: str, client_id: str, body: str) -> LicenceRow:
    try:
        return LicenceRow(licence_id, client_id, parse_licence(json.loads(body), licence_id=licence_id,
                                                               client_id=client_id))
    except (InvalidParameter, ValueError) as exc:
        log.error("licence %s is invalid and grants nothing: %s", licence_id, exc)
        return LicenceRow(licence_id, client_id, None)


def _add_revision_columns(sync_conn: Any) -> None:
    """Tables created before revisions existed get the column (every row at revision 0)."""
    inspector = inspect(sync_conn)
    for table in ("operators", "licences"):
        if "revision" not in {col["name"] for col in inspector.get_columns(table)}:
            sync_conn.execute(text(f"ALTER TABLE {table} ADD COLUMN revision BIGINT NOT NULL DEFAULT 0"))


class LicenceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await create_schema(conn, metadata.create_all)
            await conn.run_sync(_add_revision_columns)
            if (await conn.execute(select(policy_version.c.version))).first() is None:
                await conn.execute(insert(policy_version).values(id=1, version=1))

    async def version(self) -> int:
        async with reading(self._engine) as conn:
            query = select(policy_version.c.version).where(policy_version.c.id == 1)
            return int((await conn.execute(query)).scalar_one())

    async def changes(self, since: int) -> Changes:
        """What changed after version `since` (everything when `since` is 0 or ahead of the database)."""
        async with reading(self._engine) as conn:
            version = int((await conn.execute(select(policy_version.c.version))).scalar_one())
            full = since <= 0 or since > version
            lic_query = select(licences.c.licence_id, licences.c.client_id, licences.c.body)
            op_query = select(operators.c.client_id, operators.c.status)
            if not full:
                lic_query = lic_query.where(licences.c.revision > since)
                op_query = op_query.where(operators.c.revision > since)
            lic_rows = (await conn.execute(lic_query)).all()
            op_rows = (await conn.execute(op_query)).all()
        return Changes(
            version=version,
            full=full,
            licences=tuple(_parse_row(r.licence_id, r.client_id, r.body) for r in lic_rows),
            operators=tuple((r.client_id, r.status) for r in op_rows),
        )

    @staticmethod
    async def _bump(conn: AsyncConnection) -> int:
        """Take the version lock, move the version on and return it (the revision of this change)."""
        result = await conn.execute(
            update(policy_version).where(policy_version.c.id == 1)
            .values(version=policy_version.c.version + 1).returning(policy_version.c.version)
        )
        return int(result.scalar_one())

    # --- operators ---------------------------------------------------------------------------

    async def upsert_operator(self, client_id: str, *, name: str, org_uscc: str | None, now: dt.datetime) -> bool:
        """Create or rename an operator; True when it was created."""
        async with self._engine.begin() as conn:
            revision = await self._bump(conn)
            query = select(operators.c.client_id).where(operators.c.client_id == client_id)
            exists = (await conn.execute(query)).first()
            values = {"name": name, "org_uscc": org_uscc, "updated_us": _us(now), "revision": revision}
            if exists:
                await conn.execute(update(operators).where(operators.c.client_id == client_id).values(**values))
            else:
                await conn.execute(
                    insert(operators).values(client_id=client_id, status="active", reason=None, **values)
                )
            return exists is None

    async def set_operator_status(self, client_id: str, status: str, reason: str | None, now: dt.datetime) -> bool:
        """Suspend or resume; False when there is no such operator."""
        async with self._engine.begin() as conn:
            revision = await self._bump(conn)
            result = await conn.execute(
                update(operators)
                .where(operators.c.client_id == client_id)
                .values(status=status, reason=reason, updated_us=_us(now), revision=revision)
            )
            if result.rowcount == 0:
                await conn.rollback()
                return False
            return True

    async def operator(self, client_id: str) -> dict[str, Any] | None:
        async with reading(self._engine) as conn:
            row = (await conn.execute(select(operators).where(operators.c.client_id == client_id))).first()
            return dict(row._mapping) if row else None

    async def list_operators(self, *, after: str = "", limit: int = 100) -> list[dict[str, Any]]:
        query = select(operators).where(operators.c.client_id > after).order_by(operators.c.client_id).limit(limit)
        async with reading(self._engine) as conn:
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]

    # --- licences ----------------------------------------------------------------------------

    async def put_licence(self, licence: Licence, now: dt.datetime) -> bool:
        """Store a licence (insert or replace); True when it was created."""
        async with self._engine.begin() as conn:
            revision = await self._bump(conn)
            return await self._write_licence(conn, licence, now, revision)

    @staticmethod
    async def _write_licence(conn: AsyncConnection, licence: Licence, now: dt.datetime, revision: int) -> bool:
        body = json.dumps(licence.terms(), ensure_ascii=False, sort_keys=True)
        values = {"client_id": licence.client_id, "body": body, "status": licence.status,
                  "updated_us": _us(now), "revision": revision}
        query = select(licences.c.licence_id).where(licences.c.licence_id == licence.licence_id)
        exists = (await conn.execute(query)).first()
        if exists:
            await conn.execute(update(licences).where(licences.c.licence_id == licence.licence_id).values(**values))
        else:
            await conn.execute(insert(licences).values(licence_id=licence.licence_id, **values))
        return exists is None

    async def bulk_load(self, ops: Sequence[tuple[str, str]], lics: Iterable[Licence], now: dt.datetime) -> None:
        """Insert many new operators (client_id, name) and licences in one change (benchmarks, imports)."""
        stamp = _us(now)
        async with self._engine.begin() as conn:
            revision = await self._bump(conn)
            if ops:
                await conn.execute(insert(operators), [
                    {"client_id": cid, "name": name, "org_uscc": None, "status": "active", "reason": None,
                     "updated_us": stamp, "revision": revision} for cid, name in ops
                ])
            rows = [{"licence_id": lic.licence_id, "client_id": lic.client_id, "status": lic.status,
                     "body": json.dumps(lic.terms(), ensure_ascii=False, sort_keys=True),
                     "updated_us": stamp, "revision": revision} for lic in lics]
            if rows:
                await conn.execute(insert(licences), rows)

    async def licence(self, licence_id: str) -> LicenceRow | None:
        async with reading(self._engine) as conn:
            row = (await conn.execute(
                select(licences.c.licence_id, licences.c.client_id, licences.c.body)
                .where(licences.c.licence_id == licence_id)
            )).first()
        return _parse_row(row.licence_id, row.client_id, row.body) if row else None

    async def set_licence_status(self, licence_id: str, status: str, now: dt.datetime) -> Licence | None:
        """Change a stored licence's status (e.g. revoke it); None when there is no such valid licence."""
        async with self._engine.begin() as conn:
            revision = await self._bump(conn)
            row = (await conn.execute(
                select(licences.c.licence_id, licences.c.client_id, licences.c.body)
                .where(licences.c.licence_id == licence_id)
            )).first()
            parsed = _parse_row(row.licence_id, row.client_id, row.body).licence if row else None
            if parsed is None:
                await conn.rollback()
                return None
            changed = dataclasses.replace(parsed, status=status)
            await self._write_licence(conn, changed, now, revision)
            return changed

    async def licences_of(self, client_id: str) -> list[LicenceRow]:
        async with reading(self._engine) as conn:
            rows = (await conn.execute(
                select(licences.c.licence_id, licences.c.client_id, licences.c.body)
                .where(licences.c.client_id == client_id).order_by(licences.c.licence_id)
            )).all()
        return [_parse_row(r.licence_id, r.client_id, r.body) for r in rows]

    # --- incidents ---------------------------------------------------------------------------

    async def record_incident(
        self, client_id: str, *, kind: str, reason: str, detail: dict[str, Any], action: str,
        audit_index: int | None, now: dt.datetime,
    ) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(incidents).values(
                    client_id=client_id, kind=kind, reason=reason, action=action, audit_index=audit_index,
                    detail=json.dumps(detail, ensure_ascii=False, sort_keys=True), created_us=_us(now),
                ).returning(incidents.c.id)
            )
            return int(result.scalar_one())

    async def incidents(
        self, *, client_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        query = select(incidents).where(incidents.c.id > after)
        if client_id is not None:
            query = query.where(incidents.c.client_id == client_id)
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query.order_by(incidents.c.id).limit(limit))).all()
        return [
            {
                "id": r.id, "client_id": r.client_id, "kind": r.kind, "reason": r.reason,
                "detail": json.loads(r.detail), "action": r.action, "audit_index": r.audit_index,
                "time": dt.datetime.fromtimestamp(r.created_us / 1e6, dt.UTC).isoformat().replace("+00:00", "Z"),
            }
            for r in rows
        ]
