"""Storage of the exchange (SQLAlchemy 2 Core, async): partners, received and issued records,
per-issuer seq, sync cursors. Tables are in `crosstab.tables`.

Rules this module keeps:
- One record, one transaction. Accepting a record writes the row, advances its issuer's seq
  and applies a revocation together or not at all; issuing a record takes the next outbox seq
  and writes the signed record together. No half-written rows, whatever fails.
- The store has the last word on races. `inbox.decide` judges a batch against a snapshot; if
  another request accepted a record in between, `accept` refuses with the same codes the inbox
  would have used (replay, stale_seq), or reports an identical record as a duplicate.
- The received JWS is stored verbatim, so anyone can re-verify it against the partner's key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from credcore.db import create_schema, reading
from crosstab import tables as t
from crosstab.errors import Replay, StaleSeq, UnknownPartner
from crosstab.inbox import Accepted, InboxState
from crosstab.partner_rows import delete_partner, read_partners, write_partner
from crosstab.recognitions import Recognition
from crosstab.trust import Partner, TrustRegistry

Direction = Literal["pull", "push"]


@dataclass(frozen=True)
class IssuedRow:
    """One of our records as the outbox stores it."""

    jti: str
    type: str
    sub: str
    domestic_only: bool
    jws: str


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; everything stored here is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


async def ensure_counter_row(engine: AsyncEngine, table: Table, key: str, value: str | int) -> None:
    """Make sure a counter row (`last_seq` 0) exists, in its own transaction, before a writer
    locks it. Two first writers then race on this harmless insert, never on the record they
    are storing: on PostgreSQL the loser of an insert race gets a unique violation (its
    transaction is lost), where SQLite's write lock would merely have made it wait."""
    async with reading(engine) as conn:
        found = await conn.scalar(select(table.c[key]).where(table.c[key] == value))
    if found is None:
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(table).values({key: value, "last_seq": 0}))
        except IntegrityError:
            pass  # another writer created it first: the row exists, which is all we need


class CrosstabStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_tables(self) -> None:
        """Create the crosstab tables (tests and the demo; production uses migrations)."""
        async with self.engine.begin() as conn:
            await create_schema(conn, t.metadata.create_all)

    # --- partners -----------------------------------------------------------------------

    async def save_partner(self, partner: Partner) -> None:
        """Insert or replace a partner and its whole key list."""
        async with self.engine.begin() as conn:
            await write_partner(conn, partner)

    async def remove_partner(self, region: str) -> bool:
        async with self.engine.begin() as conn:
            return await delete_partner(conn, region)

    async def list_partners(self) -> list[Partner]:
        async with reading(self.engine) as conn:
            return await read_partners(conn)

    async def registry(self) -> TrustRegistry:
        return TrustRegistry(await self.list_partners())

    async def get_partner(self, region: str) -> Partner:
        """One partner, read per call (not cached): removed on one replica is gone on all."""
        async with reading(self.engine) as conn:
            found = await read_partners(conn, region)
        if not found:
            raise UnknownPartner(f"Region {region} is not a registered partner.")
        return found[0]

    # --- inbox --------------------------------------------------------------------------

    async def inbox_state(self, issuer: str, jtis: Iterable[str]) -> InboxState:
        """The digests of the given jtis already accepted from `issuer`, and its last seq."""
        wanted = sorted(set(jtis))
        async with reading(self.engine) as conn:
            # The seq first, the jtis second. Each statement may see a newer state than the one
            # before (PostgreSQL READ COMMITTED; SQLite keeps one snapshot here), and a
            # record and its seq commit together. Read in this order, every record at or below
            # the seq read is among the jtis read, so an identical re-send racing its first
            # delivery is a duplicate; read the other way round, a record committed between
            # the two reads was judged stale_seq by the request that lost the race.
            last = await conn.scalar(
                select(t.issuer_seq.c.last_seq).where(t.issuer_seq.c.issuer == issuer)
            )
            known: dict[str, str] = {}
            if wanted:
                rows = await conn.execute(
                    select(t.received.c.jti, t.received.c.digest).where(
                        and_(t.received.c.issuer == issuer, t.received.c.jti.in_(wanted))
                    )
                )
                known = {row.jti: row.digest for row in rows}
        return InboxState(known=known, last_seq={issuer: int(last)} if last is not None else {})

    async def accept(
        self, acc: Accepted, received_at: dt.datetime
    ) -> Literal["stored", "duplicate"]:
        """Store one accepted record atomically; raise Replay or StaleSeq if a race lost."""
        record = acc.record
        await self._counter_row(t.issuer_seq, "issuer", record.iss)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(t.received).values(
                        issuer=record.iss,
                        jti=record.jti,
                        seq=record.seq,
                        iat=record.iat,
                        type=record.type,
                        sub=record.sub,
                        subject_name=record.subject_name,
                        scheme=record.scheme,
                        grade=record.grade,
                        mapped_scheme=acc.mapped.our_scheme if acc.mapped else None,
                        mapped_grade=acc.mapped.our_grade if acc.mapped else None,
                        list_name=record.list_name,
                        decision_number=record.decision_number,
                        authority=record.authority,
                        authority_uscc=record.authority_uscc,
                        valid_from=record.valid_from,
                        valid_until=record.valid_until,
                        revokes=record.revokes,
                        digest=acc.digest,
                        jws=acc.jws,
                        received_at=received_at.astimezone(dt.UTC),
                        revoked=False,
                    )
                )
                await self._advance_seq(conn, record.iss, record.seq)
                if record.type == "revocation":
                    await conn.execute(
                        update(t.received)
                        .where(
                            and_(
                                t.received.c.issuer == record.iss,
                                t.received.c.jti == record.revokes,
                                t.received.c.type != "revocation",
                                t.received.c.revoked.is_(False),
                            )
                        )
                        .values(revoked=True, revoked_by=record.jti)
                    )
        except IntegrityError:
            return await self._explain_conflict(acc)
        return "stored"

    async def _counter_row(self, table: Table, key: str, value: str | int) -> None:
        await ensure_counter_row(self.engine, table, key, value)

    async def _advance_seq(self, conn: AsyncConnection, issuer: str, seq: int) -> None:
        moved = await conn.execute(
            update(t.issuer_seq)
            .where(and_(t.issuer_seq.c.issuer == issuer, t.issuer_seq.c.last_seq < seq))
            .values(last_seq=seq)
        )
        if not moved.rowcount:
            # Raising rolls back the row inserted above: the record is not half-stored.
            raise StaleSeq(f"seq {seq} is not above the last accepted from {issuer}.")

    async def _explain_conflict(self, acc: Accepted) -> Literal["duplicate"]:
        async with reading(self.engine) as conn:
            digest = await conn.scalar(
                select(t.received.c.digest).where(
                    and_(t.received.c.issuer == acc.record.iss, t.received.c.jti == acc.jti)
                )
            )
        if digest == acc.digest:
            return "duplicate"
        if digest is not None:
            raise Replay(f"jti {acc.jti!r} was already used for a different record.")
        raise StaleSeq(f"seq {acc.record.seq} was already accepted from {acc.record.iss}.")

    async def recognitions(self, uscc: str) -> list[Recognition]:
        """Every received evaluation and list entry about a company, oldest first per region."""
        query = (
            select(t.received, t.partners.c.name.label("origin_name"))
            .select_from(
                t.received.outerjoin(t.partners, t.partners.c.region == t.received.c.issuer)
            )
            .where(and_(t.received.c.sub == uscc, t.received.c.type != "revocation"))
            .order_by(t.received.c.issuer, t.received.c.seq)
        )
        async with reading(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        return [Recognition.from_row(row._mapping, _aware(row.received_at)) for row in rows]

    # --- outbox -------------------------------------------------------------------------

    async def issue(self, build: Callable[[int], IssuedRow], now: dt.datetime) -> int:
        """Take the next outbox seq and store `build(seq)` in the same transaction; if `build`
        raises, nothing is written and the seq is not used up."""
        await self._counter_row(t.outbox_seq, "id", 1)
        async with self.engine.begin() as conn:
            # The row lock taken here is held to commit, so seqs become visible in order.
            await conn.execute(
                update(t.outbox_seq)
                .where(t.outbox_seq.c.id == 1)
                .values(last_seq=t.outbox_seq.c.last_seq + 1)
            )
            seq = int(await conn.scalar(select(t.outbox_seq.c.last_seq)) or 0)
            row = build(seq)
            await conn.execute(
                insert(t.issued).values(
                    seq=seq,
                    jti=row.jti,
                    type=row.type,
                    sub=row.sub,
                    domestic_only=row.domestic_only,
                    jws=row.jws,
                    issued_at=now.astimezone(dt.UTC),
                )
            )
        return seq

    async def issued_domestic_only(self, jti: str) -> bool | None:
        """Whether our record `jti` is domestic-only; None when we never issued it."""
        async with reading(self.engine) as conn:
            value = await conn.scalar(select(t.issued.c.domestic_only).where(t.issued.c.jti == jti))
        return None if value is None else bool(value)

    async def issued_page(
        self, after: int, limit: int, *, include_domestic_only: bool
    ) -> list[tuple[int, str]]:
        """(seq, jws) of our records after `after`, in seq order; the filter runs in SQL so
        a domestic-only record is never even read for a partner abroad."""
        query = select(t.issued.c.seq, t.issued.c.jws).where(t.issued.c.seq > after)
        if not include_domestic_only:
            query = query.where(t.issued.c.domestic_only.is_(False))
        query = query.order_by(t.issued.c.seq).limit(limit)
        async with reading(self.engine) as conn:
            return [(int(row.seq), str(row.jws)) for row in await conn.execute(query)]

    # --- sync cursors ---------------------------------------------------------------------

    async def get_cursor(self, partner: str, direction: Direction) -> int:
        async with reading(self.engine) as conn:
            value = await conn.scalar(
                select(t.sync_cursors.c.after).where(
                    and_(
                        t.sync_cursors.c.partner == partner,
                        t.sync_cursors.c.direction == direction,
                    )
                )
            )
        return int(value or 0)

    async def set_cursor(
        self, partner: str, direction: Direction, after: int, now: dt.datetime, error: str | None
    ) -> None:
        """Record how far a sync got (and its last error, None when it went well)."""
        key = and_(t.sync_cursors.c.partner == partner, t.sync_cursors.c.direction == direction)
        values = {"after": after, "updated_at": now.astimezone(dt.UTC), "last_error": error}
        async with self.engine.begin() as conn:
            moved = await conn.execute(update(t.sync_cursors).where(key).values(**values))
            if not moved.rowcount:
                await conn.execute(
                    insert(t.sync_cursors).values(partner=partner, direction=direction, **values)
                )
