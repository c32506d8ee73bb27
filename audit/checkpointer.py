"""Signs checkpoints of the log and keeps them, so the served checkpoint lags at most `interval`.

Rules:
1. A checkpoint is signed at least every `interval` seconds while entries arrive (at most one per
   half interval), and at once when `every` entries are waiting (0: no count rule).
2. A checkpoint is NEVER signed for a tree inconsistent with the last stored one: before signing
   size N, the root of N and an RFC 9162 consistency proof from the last stored checkpoint are
   computed from the stored nodes, and the proof must verify against the stored root. A log
   shorter than a stored checkpoint (truncated or rolled back), or whose stored nodes disagree
   with a signed root, is refused, loudly (CRITICAL), and nothing is signed until it is repaired.
3. Each checkpoint is signed by every active key (audit/keys.py: two during a rotation) and stored
   by tree size; its history lets `audit verify` check that every later tree extends every
   earlier one.
4. Once signed and published, the checkpoint is sent to the configured witnesses (C2SP
   tlog-witness); their cosignature lines are stored and appended to the served note. The
   witnesses missing from the served checkpoint (down, or not started yet, when it was signed)
   are asked again in the background, paced by the witness client, so that a log with no new
   entries still gets cosigned once its partners are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit import tables
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.keys import add_key, load_signers
from audit.note import NoteSigner, generate_signer
from audit.rfc9162 import NodeGetter, consistency_proof_from_nodes, verify_consistency
from audit.writer import TreeHead, load_frontier, load_nodes, needed_nodes
from credcore.clock import Clock, system_clock
from credcore.db import create_schema, reading
from credcore.errors import CredgateError, VerificationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str  # the log-signed note, as stored
    cosignatures: tuple[str, ...] = ()  # witnesses' signature lines

    @property
    def served(self) -> str:
        """The note with the witnesses' cosignature lines appended (still a valid signed note)."""
        return self.note + "".join(self.cosignatures)


async def load_or_create_signer(engine: AsyncEngine, origin: str, clock: Clock = system_clock) -> NoteSigner:
    """The newest active note signer for `origin`, created and stored on first use."""
    async with engine.begin() as conn:
        await create_schema(conn, tables.create_schema)
        signers = await load_signers(conn, origin)
        if signers:
            return signers[-1]
        signer = generate_signer(origin)
        await add_key(conn, signer, clock.time())
        return signer


class CosignSource(Protocol):
    """What the checkpointer needs of a witness client (audit/witnessing.py)."""

    async def cosign(self, size: int, note: str) -> list[str]: ...

    async def cosign_missing(self, size: int, note: str, have: Sequence[str]) -> list[str]: ...

    async def close(self) -> None: ...


class Checkpointer:
    def __init__(
        self, engine: AsyncEngine, signer: NoteSigner, *, origin: str, interval: float = 1.0,
        every: int = 0, clock: Clock = system_clock, witnesses: CosignSource | None = None,
    ) -> None:
        self._engine = engine
        self._signers = [signer]
        self._origin = origin
        self._interval = interval
        self._every = every
        self._clock = clock
        self._witnesses = witnesses
        self._latest: SignedCheckpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._recosign: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._hurry = asyncio.Event()  # N entries are waiting, or we are stopping
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self.refusal: str | None = None  # why the last signing was refused, if it was

    @property
    def verifier_key(self) -> str:
        """The newest active key (during a rotation both keys sign; this one stays)."""
        return self._signers[-1].verifier_key

    async def start(self) -> None:
        with contextlib.suppress(VerificationError):  # refused loudly; the gateway still serves the last one
            await self.sign_latest()
        self._task = asyncio.create_task(self._run(), name="audit-checkpointer")

    async def close(self) -> None:
        # Stopped, not cancelled: a query cancelled half-way can leave its SQLite transaction
        # open, and its lock would stall every writer for the busy timeout.
        self._stop.set()
        self._hurry.set()
        self._poke.set()
        if self._task is not None:
            await self._task
        if self._recosign is not None:
            await self._recosign  # bounded by the witness timeout
        with contextlib.suppress(SQLAlchemyError, OSError, CredgateError):
            await self.sign_latest(cosign=False)
        if self._witnesses is not None:
            await self._witnesses.close()

    def poke(self, head: TreeHead | None = None) -> None:
        """Ask for a checkpoint soon (called after each committed batch with the new head)."""
        self._poke.set()
        latest = self._latest.size if self._latest is not None else 0
        if head is not None and self._every and head.size - latest >= self._every:
            self._hurry.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._interval)
            self._poke.clear()
            if self._stop.is_set():
                return
            self._hurry.clear()
            try:
                await self.sign_latest()
            except (SQLAlchemyError, OSError, CredgateError) as exc:  # retried next tick
                log.warning("checkpoint not signed: %s", exc)
            except Exception:  # a bug or a library's race must not end checkpointing for good
                log.exception("checkpoint not signed (unexpected error); retried next tick")
            self._ask_missing_witnesses()
            # At most one checkpoint per half interval keeps the lag under `interval`, unless
            # `every` entries are already waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), timeout=self._interval / 2)

    def _ask_missing_witnesses(self) -> None:
        """Start asking the witnesses missing from the served checkpoint again, off the signing
        path (a witness that hangs must not delay the next checkpoint); one such task at a time."""
        latest = self._latest
        if latest is None or self._witnesses is None or (self._recosign is not None and not self._recosign.done()):
            return
        self._recosign = asyncio.create_task(self._add_missing(latest, self._witnesses), name="audit-recosign")

    async def _add_missing(self, latest: SignedCheckpoint, witnesses: CosignSource) -> None:
        try:
            lines = await witnesses.cosign_missing(latest.size, latest.note, latest.cosignatures)
        except (SQLAlchemyError, OSError, CredgateError) as exc:  # tried again next tick
            log.warning("cosignatures of checkpoint %d not stored: %s", latest.size, exc)
            return
        if len(lines) > len(latest.cosignatures) and self._latest is latest:
            self._latest = SignedCheckpoint(latest.size, latest.root, latest.note, tuple(lines))

    async def latest(self) -> SignedCheckpoint:
        return self._latest if self._latest is not None else await self.sign_latest()

    def _refuse(self, size: int, why: str) -> VerificationError:
        self.refusal = why
        log.critical("REFUSING to sign a checkpoint of size %d: %s", size, why)
        return VerificationError(f"refused to sign a checkpoint of size {size}: {why}", index=size)

    async def _check_extends(self, conn: AsyncConnection, size: int, root: bytes) -> SignedCheckpoint | None:
        """Raise unless the tree (size, root) extends the last stored checkpoint; return that one
        when it already has this size."""
        c = tables.checkpoints
        last = (await conn.execute(select(c.c.size, c.c.root, c.c.note).order_by(c.c.size.desc()).limit(1))).first()
        if last is None:
            return None
        prev_size, prev_root = int(last.size), bytes(last.root)
        if prev_size > size:
            raise self._refuse(size, f"a checkpoint of size {prev_size} was signed, but the log now has {size} "
                                     "entries: it was truncated or rolled back")
        if prev_size == size:
            if prev_root != root:
                raise self._refuse(size, "the stored tree no longer has the root signed for this size")
            lines = await conn.execute(select(tables.cosignatures.c.line).where(tables.cosignatures.c.size == size)
                                       .order_by(tables.cosignatures.c.witness))
            return SignedCheckpoint(prev_size, prev_root, str(last.note), tuple(str(r.line) for r in lines))

        def compute(get: NodeGetter) -> list[bytes]:
            return consistency_proof_from_nodes(prev_size, size, get)

        found = await load_nodes(conn, needed_nodes(compute))
        proof = compute(lambda level, index: found[(level, index)])
        try:
            verify_consistency(prev_size, size, prev_root, root, proof)
        except VerificationError as exc:
            raise self._refuse(size, f"the tree is not consistent with the checkpoint of size {prev_size}: "
                                     f"{exc.description}") from None
        return None

    async def sign_latest(self, *, cosign: bool = True) -> SignedCheckpoint:
        async with self._lock:
            async with reading(self._engine) as conn:
                size = int((await conn.execute(select(tables.head.c.size).where(tables.head.c.id == 1))).scalar_one())
                if self._latest is not None and self._latest.size == size:
                    return self._latest
                root = (await load_frontier(conn, size)).root()
                stored = await self._check_extends(conn, size, root)
                signers = await load_signers(conn, self._origin)
            self.refusal = None
            if stored is None:
                self._signers = signers or self._signers
                note = sign_checkpoint(Checkpoint(self._origin, size, root), self._signers)
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(insert(tables.checkpoints).values(
                            size=size, root=root, note=note, ts_us=int(self._clock.time() * 1_000_000)))
                    stored = SignedCheckpoint(size, root, note)
                except IntegrityError:  # another gateway process signed this size first: serve theirs
                    async with reading(self._engine) as conn:
                        row = (await conn.execute(select(tables.checkpoints.c.note)
                                                  .where(tables.checkpoints.c.size == size))).one()
                    stored = SignedCheckpoint(size, root, str(row.note))
            self._latest = stored
        if cosign and self._witnesses is not None:
            lines = await self._witnesses.cosign(stored.size, stored.note)
            if lines and self._latest is stored:
                self._latest = SignedCheckpoint(stored.size, stored.root, stored.note, tuple(lines))
        return self._latest
