"""Signs checkpoints of the log and keeps them, so the served checkpoint lags at most `interval`.

Each signed checkpoint is stored by tree size; its history lets `audit verify` check that every
later tree extends every earlier one. The note signing key lives in `audit_keys` and is made
at first start, so a restarted gateway keeps its verifier key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.checkpoint import Checkpoint, format_checkpoint
from audit.note import NoteSigner
from audit.writer import load_frontier
from credcore.clock import Clock, system_clock
from credcore.errors import CredgateError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str


async def load_or_create_signer(engine: AsyncEngine, origin: str, clock: Clock = system_clock) -> NoteSigner:
    """The active note signer for `origin`, created and stored on first use."""
    async with engine.begin() as conn:
        await conn.run_sync(tables.metadata.create_all)
        row = (
            await conn.execute(
                select(tables.keys.c.private_key)
                .where(tables.keys.c.active.is_(True), tables.keys.c.name == origin)
                .order_by(tables.keys.c.not_before_us.desc())
            )
        ).first()
        if row is not None:
            return NoteSigner(origin, Ed25519PrivateKey.from_private_bytes(bytes(row.private_key)))
        key = Ed25519PrivateKey.generate()
        signer = NoteSigner(origin, key)
        from cryptography.hazmat.primitives import serialization

        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        await conn.execute(
            insert(tables.keys).values(
                key_id=signer.verifier_key.split("+")[1],
                name=origin,
                private_key=seed,
                verifier_key=signer.verifier_key,
                not_before_us=int(clock.time() * 1_000_000),
                not_after_us=None,
                active=True,
            )
        )
        return signer


class Checkpointer:
    def __init__(
        self, engine: AsyncEngine, signer: NoteSigner, *, origin: str, interval: float = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._origin = origin
        self._interval = interval
        self._clock = clock
        self._latest: SignedCheckpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._stop = asyncio.Event()

    @property
    def verifier_key(self) -> str:
        return self._signer.verifier_key

    async def start(self) -> None:
        await self.sign_latest()
        self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def close(self) -> None:
        # Stopped, not cancelled: a query cancelled half-way can leave its SQLite transaction
        # open, and its lock would stall every writer for the busy timeout.
        self._stop.set()
        self._poke.set()
        if self._task is not None:
            await self._task
        with contextlib.suppress(SQLAlchemyError, OSError, CredgateError):
            await self.sign_latest()

    def poke(self) -> None:
        """Ask for a checkpoint soon (called after each committed batch)."""
        self._poke.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._interval)
            self._poke.clear()
            if self._stop.is_set():
                return
            try:
                await self.sign_latest()
            except (SQLAlchemyError, OSError, CredgateError) as exc:  # retried next tick; the log is intact
                log.warning("checkpoint not signed: %s", exc)
            # At most one checkpoint per half interval keeps the lag under `interval`.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval / 2)

    async def latest(self) -> SignedCheckpoint:
        return self._latest if self._latest is not None else await self.sign_latest()

    async def sign_latest(self) -> SignedCheckpoint:
        async with self._engine.connect() as conn:
            size = int((await conn.execute(select(tables.head.c.size).where(tables.head.c.id == 1))).scalar_one())
            if self._latest is not None and self._latest.size == size:
                return self._latest
            stored = (
                await conn.execute(
                    select(tables.checkpoints.c.size, tables.checkpoints.c.root, tables.checkpoints.c.note).where(
                        tables.checkpoints.c.size == size
                    )
                )
            ).first()
            if stored is not None:
                self._latest = SignedCheckpoint(int(stored.size), bytes(stored.root), str(stored.note))
                return self._latest
            root = (await load_frontier(conn, size)).root()
        note = self._signer.sign(format_checkpoint(Checkpoint(self._origin, size, root)))
        signed = SignedCheckpoint(size, root, note)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(tables.checkpoints).values(
                        size=size, root=root, note=note, ts_us=int(self._clock.time() * 1_000_000)
                    )
                )
        except IntegrityError:
            pass  # another gateway process signed this size first; both notes are valid
        self._latest = signed
        return signed
