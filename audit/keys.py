"""The log's note signing keys and their history (validity windows), and key rotation.

Rules:
1. Every key is named after the log's origin and kept forever in `audit_keys` with the window
   [not_before, not_after) in which it may sign; the history is published (GET /audit/keys).
2. Rotation has two steps. `start_rotation` adds a new active key: from then on every checkpoint
   carries one signature line per active key (C2SP signed notes allow several), so verifiers
   that know either key accept it. `finish_rotation` retires the older keys (not_after = now,
   inactive), and refuses while no stored checkpoint carries the new key's signature yet, so
   there is never a moment in which the served checkpoint is signed by no current key.
3. A note verifies "at time t" when a key valid at t signed it (`verifiers_at`); signatures by
   keys outside their window are ignored like unknown keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit import tables
from audit.checkpoint import Checkpoint, verify_checkpoint
from audit.note import NoteSigner, NoteVerifier, generate_signer, verify_note
from credcore.clock import Clock, rfc3339, system_clock
from credcore.db import create_schema
from credcore.errors import ConfigError, VerificationError


@dataclass(frozen=True)
class LogKey:
    """One verifier key and the window [not_before, not_after) in which it may sign (epoch seconds)."""

    verifier: NoteVerifier
    not_before: float | None = None
    not_after: float | None = None

    def valid_at(self, when: float | None) -> bool:
        if when is None:
            return True
        started = self.not_before is None or self.not_before <= when
        return started and (self.not_after is None or when < self.not_after)

    def to_json(self) -> dict[str, Any]:
        return {
            "verifier_key": self.verifier.verifier_key,
            "key_id": self.verifier.key_id.hex(),
            "not_before": _time(self.not_before),
            "not_after": _time(self.not_after),
        }

    @classmethod
    def from_json(cls, item: Any) -> LogKey:
        """Parse one item of the published key history; VerificationError if malformed."""
        if not isinstance(item, dict) or not isinstance(item.get("verifier_key"), str):
            raise VerificationError("a key history item needs a verifier_key")
        return cls(NoteVerifier.from_key(item["verifier_key"]), _parse_time(item.get("not_before")),
                   _parse_time(item.get("not_after")))


def _time(value: float | None) -> str | None:
    return None if value is None else rfc3339(dt.datetime.fromtimestamp(value, dt.UTC))


def _parse_time(value: Any) -> float | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise VerificationError(f"key validity time {value!r} is not RFC 3339") from None
    if when.tzinfo is None:
        raise VerificationError(f"key validity time {value!r} has no offset")
    return when.timestamp()


def always_valid(keys: Iterable[str]) -> list[LogKey]:
    """Keys given by hand (`--key`): trusted at any time."""
    try:
        return [LogKey(NoteVerifier.from_key(k)) for k in keys if k.strip()]
    except VerificationError as exc:
        raise ConfigError(f"the verifier key is malformed: {exc.description}") from exc


def verifiers_at(keys: Sequence[LogKey], when: float | None) -> list[NoteVerifier]:
    return [k.verifier for k in keys if k.valid_at(when)]


def verify_checkpoint_at(note: str, keys: Sequence[LogKey], when: float | None) -> Checkpoint:
    """Verify a signed checkpoint with the keys that were valid at `when` (None: any key)."""
    trusted = verifiers_at(keys, when)
    if not trusted and keys:
        raise VerificationError(f"no log key was valid at {_time(when)}")
    return verify_checkpoint(note, trusted)


def _row_key(row: Any) -> LogKey:
    return LogKey(NoteVerifier.from_key(row.verifier_key), row.not_before_us / 1e6,
                  None if row.not_after_us is None else row.not_after_us / 1e6)


async def load_keys(conn: AsyncConnection) -> list[LogKey]:
    """The whole key history, oldest first."""
    rows = await conn.execute(select(tables.keys).order_by(tables.keys.c.not_before_us, tables.keys.c.key_id))
    return [_row_key(r) for r in rows]


async def load_signers(conn: AsyncConnection, origin: str) -> list[NoteSigner]:
    """The active signers of `origin`, oldest first (so the first line stays the long-known key)."""
    rows = await conn.execute(
        select(tables.keys.c.private_key)
        .where(tables.keys.c.active.is_(True), tables.keys.c.name == origin)
        .order_by(tables.keys.c.not_before_us, tables.keys.c.key_id)
    )
    return [NoteSigner(origin, Ed25519PrivateKey.from_private_bytes(bytes(r.private_key))) for r in rows]


async def add_key(conn: AsyncConnection, signer: NoteSigner, now: float) -> None:
    """Store a new active key valid from `now`; its start is kept after every earlier key's, so
    "newest" is never a tie (a clock that stood still, or went back)."""
    latest = (await conn.execute(select(func.max(tables.keys.c.not_before_us))
                                 .where(tables.keys.c.name == signer.name))).scalar()
    start = max(int(now * 1_000_000), int(latest) + 1 if latest is not None else 0)
    await conn.execute(
        insert(tables.keys).values(
            key_id=signer.key_id.hex(), name=signer.name, private_key=signer.private_key_seed,
            verifier_key=signer.verifier_key, not_before_us=start, not_after_us=None, active=True,
        )
    )


async def start_rotation(engine: AsyncEngine, origin: str, clock: Clock = system_clock,
                         signer: NoteSigner | None = None) -> NoteSigner:
    """Add a new active key for `origin`; it signs beside the current one(s) from now on."""
    async with engine.begin() as conn:
        await create_schema(conn, tables.create_schema)
        active = await load_signers(conn, origin)
        if not active:
            raise ConfigError(f"the database has no active key for the origin {origin!r}; start the gateway first.")
        if len(active) > 1:
            raise ConfigError("a rotation is already in progress; finish it with --finish first.")
        new = signer or generate_signer(origin)
        await add_key(conn, new, clock.time())
    return new


async def finish_rotation(engine: AsyncEngine, origin: str, clock: Clock = system_clock) -> list[str]:
    """Retire every active key but the newest; returns the retired verifier keys."""
    async with engine.begin() as conn:
        rows = (await conn.execute(
            select(tables.keys.c.key_id, tables.keys.c.verifier_key)
            .where(tables.keys.c.active.is_(True), tables.keys.c.name == origin)
            .order_by(tables.keys.c.not_before_us, tables.keys.c.key_id)
        )).all()
        if len(rows) < 2:
            raise ConfigError("no rotation is in progress: start one with `credgate audit rotate-key` first.")
        newest = NoteVerifier.from_key(rows[-1].verifier_key)
        latest = (await conn.execute(
            select(tables.checkpoints.c.note).order_by(tables.checkpoints.c.size.desc()).limit(1)
        )).first()
        try:
            if latest is None:
                raise VerificationError("no checkpoint yet")
            verify_note(str(latest.note), [newest])
        except VerificationError:
            raise ConfigError(
                "the new key has not signed a stored checkpoint yet; let the gateway sign one (it does so "
                "within its checkpoint interval once an entry is appended), then finish the rotation."
            ) from None
        old = [r.key_id for r in rows[:-1]]
        await conn.execute(
            update(tables.keys).where(tables.keys.c.key_id.in_(old))
            .values(active=False, not_after_us=int(clock.time() * 1_000_000))
        )
    return [r.verifier_key for r in rows[:-1]]


def history_json(keys: Sequence[LogKey], origin: str) -> dict[str, Any]:
    return {"origin": origin, "keys": [k.to_json() for k in keys]}
