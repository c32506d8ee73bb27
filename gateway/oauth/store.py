"""All SQL of the authorization server, over one `AsyncEngine` (SQLite or PostgreSQL).

Uniqueness is left to the database (primary keys), so two gateway processes sharing it
cannot both accept one assertion jti or both create a first signing key unnoticed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.db import create_schema, reading
from credcore.errors import InvalidParameter, NotFound

from .keys import ACCESS_TOKEN_ALG, SigningKey
from .models import ClientInfo
from .tables import (
    ALL_TABLES,
    metadata,
    oauth_assertion_jtis,
    oauth_clients,
    oauth_revoked_tokens,
    oauth_signing_keys,
)


def _utc(when: dt.datetime) -> dt.datetime:
    # SQLite drops the offset of a timezone=True column, so every time is stored as UTC.
    return when.astimezone(dt.UTC)


def _aware(when: dt.datetime) -> dt.datetime:
    # ...and SQLite hands it back naive: it is UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class ClientRecord:
    info: ClientInfo
    secret_hash: str | None


class OAuthStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> None:
        async with self.engine.begin() as conn:
            await create_schema(conn, lambda sync: metadata.create_all(sync, tables=list(ALL_TABLES)))

    # --- clients -------------------------------------------------------------------------

    async def insert_client(self, record: ClientRecord) -> None:
        info = record.info
        values: dict[str, Any] = {
            "client_id": info.client_id,
            "name": info.name,
            "secret_hash": record.secret_hash,
            "scope": " ".join(sorted(info.scope)),
            "jwks": info.jwks,
            "auth_methods": " ".join(info.auth_methods),
            "status": info.status,
            "revoked_before": info.revoked_before,
            "created_at": _utc(info.created_at),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(oauth_clients).values(**values))
        except IntegrityError as exc:
            raise InvalidParameter(
                "client_id", f"A client with id {info.client_id!r} already exists."
            ) from exc

    async def get_client(self, client_id: str) -> ClientRecord | None:
        async with reading(self.engine) as conn:
            row = (
                await conn.execute(
                    select(oauth_clients).where(oauth_clients.c.client_id == client_id)
                )
            ).first()
        if row is None:
            return None
        info = ClientInfo(
            client_id=row.client_id,
            name=row.name,
            scope=frozenset(row.scope.split()),
            auth_methods=tuple(row.auth_methods.split()),
            status=row.status,
            created_at=_aware(row.created_at),
            jwks=row.jwks,
            revoked_before=row.revoked_before,
        )
        return ClientRecord(info=info, secret_hash=row.secret_hash)

    async def set_status(self, client_id: str, status: str) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(oauth_clients)
                .where(oauth_clients.c.client_id == client_id)
                .values(status=status)
            )
        if result.rowcount == 0:
            raise NotFound(f"No OAuth client {client_id!r}.")

    async def raise_revoked_before(self, client_id: str, floor: int) -> int:
        """Move the client's `revoked_before` strictly forward, to at least `floor`.

        Strictly: a token issued after an earlier revocation in the same second has
        iat = old + 1 (see the token generator), and a new revocation must cover it.
        """
        async with self.engine.begin() as conn:
            current = (
                await conn.execute(
                    select(oauth_clients.c.revoked_before)
                    .where(oauth_clients.c.client_id == client_id)
                    .with_for_update()
                )
            ).first()
            if current is None:
                raise NotFound(f"No OAuth client {client_id!r}.")
            old = current.revoked_before
            new = floor if old is None else max(floor, old + 1)
            await conn.execute(
                update(oauth_clients)
                .where(oauth_clients.c.client_id == client_id)
                .values(revoked_before=new)
            )
        return new

    # --- revocation ------------------------------------------------------------------------

    async def deny_jti(self, jti: str, client_id: str, exp: int, now: dt.datetime) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(oauth_revoked_tokens).values(
                        jti=jti, client_id=client_id, exp=exp, revoked_at=_utc(now)
                    )
                )
        except IntegrityError:
            pass  # already revoked: revocation is idempotent (RFC 7009 §2.2)

    async def load_revocations(self, live_after: int) -> tuple[dict[str, int], dict[str, int]]:
        """The deny-list of tokens that may still be live, and every client's revoked_before."""
        async with reading(self.engine) as conn:
            denied = {
                row.jti: row.exp
                for row in await conn.execute(
                    select(oauth_revoked_tokens.c.jti, oauth_revoked_tokens.c.exp).where(
                        oauth_revoked_tokens.c.exp >= live_after
                    )
                )
            }
            before = {
                row.client_id: row.revoked_before
                for row in await conn.execute(
                    select(oauth_clients.c.client_id, oauth_clients.c.revoked_before).where(
                        oauth_clients.c.revoked_before.is_not(None)
                    )
                )
            }
        return denied, before

    # --- RFC 7523 assertion replay ---------------------------------------------------------

    async def use_assertion_jti(self, client_id: str, jti: str, exp: int) -> bool:
        """Record a client assertion's jti; False if it was used before."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(oauth_assertion_jtis).values(client_id=client_id, jti=jti, exp=exp)
                )
        except IntegrityError:
            return False
        return True

    async def purge_expired(self, before: int) -> None:
        """Forget deny-list entries and assertion jtis of tokens that have expired anyway."""
        async with self.engine.begin() as conn:
            for table in (oauth_revoked_tokens, oauth_assertion_jtis):
                await conn.execute(delete(table).where(table.c.exp < before))

    # --- signing keys ----------------------------------------------------------------------

    async def active_keys(self) -> list[SigningKey]:
        """Active keys, oldest first (the first is the one that signs)."""
        async with reading(self.engine) as conn:
            rows = await conn.execute(
                select(oauth_signing_keys.c.private_key_pem)
                .where(oauth_signing_keys.c.active.is_(True))
                .order_by(oauth_signing_keys.c.created_at, oauth_signing_keys.c.kid)
            )
            return [SigningKey.from_pem(row.private_key_pem) for row in rows]

    async def add_key(self, key: SigningKey, now: dt.datetime) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(oauth_signing_keys).values(
                        kid=key.kid,
                        alg=ACCESS_TOKEN_ALG,
                        private_key_pem=key.private_pem(),
                        created_at=_utc(now),
                        active=True,
                    )
                )
        except IntegrityError:
            pass  # the same key cannot be generated twice; nothing to do
