"""Witnessing over SQL and HTTP: this gateway as a witness of partner logs, and as a log that asks
its partners' witnesses for cosignatures (C2SP tlog-witness; the checks are in audit/witness.py).

Witness side: the latest cosigned checkpoint per origin is kept in `audit_witness_state`; the
compare of the old size and the update are one transaction (the row is locked on PostgreSQL,
SQLite transactions take the write lock first), so two racing requests can never roll the
stored size back. The cosigning key is made at first start and kept in `audit_witness_key`.

Log side: `WitnessClient.cosign` posts each new checkpoint to every configured witness with a
consistency proof from the size that witness last cosigned (learnt from its answers, or from
a 409), keeps the cosignature lines it gets in `audit_cosignatures`, and returns them so the
served checkpoint carries them. A witness that is down or refuses costs nothing but its line,
and `cosign_missing` asks it again later (with exponential backoff, from RETRY_BASE up to
RETRY_MAX seconds): partner gateways start, restart and fail independently, and a quiet log
signs no new checkpoint that would otherwise give the witness another chance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.cosignature import CosignatureSigner, CosignatureVerifier, verify_cosignatures
from audit.note import SIG_PREFIX, NoteVerifier
from audit.witness import (
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    Witness,
    WitnessError,
    WitnessState,
    format_add_checkpoint,
    new_state,
    parse_add_checkpoint,
)
from credcore.clock import Clock, system_clock
from credcore.db import create_schema, reading
from credcore.errors import ConfigError, VerificationError

log = logging.getLogger(__name__)
RETRY_BASE = 1.0  # seconds before asking a witness again after it failed to cosign
RETRY_MAX = 60.0  # the longest pause between two tries


async def load_or_create_cosigner(engine: AsyncEngine, name: str, clock: Clock = system_clock) -> CosignatureSigner:
    """This gateway's witness key named `name`, made and stored on first use."""
    async with engine.begin() as conn:
        await create_schema(conn, tables.create_schema)
        row = (await conn.execute(select(tables.witness_key.c.private_key).where(tables.witness_key.c.name == name))
               ).first()
        if row is not None:
            return CosignatureSigner(name, Ed25519PrivateKey.from_private_bytes(bytes(row.private_key)))
        signer = CosignatureSigner(name, Ed25519PrivateKey.generate())
        await conn.execute(insert(tables.witness_key).values(
            name=name, private_key=signer.private_key_seed, verifier_key=signer.verifier_key,
            created_us=int(clock.time() * 1_000_000)))
        return signer


class WitnessService:
    """add-checkpoint with the state in SQL."""

    def __init__(self, engine: AsyncEngine, witness: Witness, clock: Clock = system_clock) -> None:
        self._engine = engine
        self.witness = witness
        self._clock = clock

    async def add_checkpoint(self, body: bytes) -> str:
        """The cosignature line(s) for the request `body`; WitnessError with the spec's status otherwise."""
        request = parse_add_checkpoint(body)
        for _attempt in range(2):
            try:
                return await self._add(request)
            except IntegrityError:  # two first requests for one origin raced; the loser re-reads
                continue
        raise WitnessError(503, "the witness state is busy; retry")

    async def _add(self, request: AddCheckpoint) -> str:
        origin = request.note.split("\n", 1)[0]
        st = tables.witness_state
        async with self._engine.begin() as conn:
            query = select(st.c.size, st.c.root, st.c.note).where(st.c.origin == origin)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = (await conn.execute(query)).first()
            state = WitnessState(int(row.size), bytes(row.root), str(row.note)) if row else None
            cp = self.witness.check(request, state)
            now_us = int(self._clock.time() * 1_000_000)
            fresh = new_state(cp, request.note)
            values = {"size": fresh.size, "root": fresh.root, "note": fresh.note, "updated_us": now_us}
            if row is None:
                await conn.execute(insert(st).values(origin=origin, **values))
            else:
                done = await conn.execute(update(st).where(st.c.origin == origin, st.c.size == int(row.size))
                                          .values(**values))
                if done.rowcount != 1:
                    raise WitnessError(503, "the witness state changed under this request; retry")
        return self.witness.cosign(request.note, int(self._clock.time()))

    async def states(self) -> list[WitnessState]:
        st = tables.witness_state
        async with reading(self._engine) as conn:
            rows = await conn.execute(select(st.c.size, st.c.root, st.c.note).order_by(st.c.origin))
            return [WitnessState(int(r.size), bytes(r.root), str(r.note)) for r in rows]


@dataclass(frozen=True)
class WitnessPeer:
    """A witness this log asks for cosignatures: its submission prefix and its key."""

    url: str
    verifier: CosignatureVerifier


def parse_witness_peers(spec: str) -> list[WitnessPeer]:
    """`VKEY@URL` items separated by commas or whitespace; ConfigError naming the bad item."""
    peers = []
    for item in spec.replace(",", " ").split():
        vkey, at, url = item.rpartition("@")
        if not at or not url.startswith(("http://", "https://")):
            raise ConfigError(f"witness {item[:80]!r} is not <witness key>@<http(s) submission prefix>")
        try:
            peers.append(WitnessPeer(url.rstrip("/"), CosignatureVerifier.from_key(vkey)))
        except VerificationError as exc:
            raise ConfigError(f"witness {item[:80]!r}: {exc.description}") from exc
    return peers


def parse_witnessed_logs(spec: str, setting: str = "audit.witness_logs") -> dict[str, list[NoteVerifier]]:
    """Note verifier keys (comma or space separated) of the logs to witness, grouped by origin."""
    logs: dict[str, list[NoteVerifier]] = {}
    for vkey in spec.replace(",", " ").split():
        try:
            verifier = NoteVerifier.from_key(vkey)
        except VerificationError as exc:
            raise ConfigError(f"setting '{setting}': {exc.description}") from exc
        logs.setdefault(verifier.name, []).append(verifier)
    return logs


ProofSource = Callable[[int, int], Awaitable[list[bytes]]]


class WitnessClient:
    """Asks witnesses to cosign this log's checkpoints and stores what they return."""

    def __init__(self, engine: AsyncEngine, peers: Sequence[WitnessPeer], proof: ProofSource, *,
                 timeout: float = 2.0, clock: Clock = system_clock) -> None:
        self._engine = engine
        self.peers = list(peers)
        self._proof = proof
        self._timeout = timeout
        self._clock = clock
        self._known: dict[str, int] = {}  # witness name -> size it last cosigned (as far as we know)
        self._failures: dict[str, int] = {}  # witness name -> tries failed in a row
        self._retry_at: dict[str, float] = {}  # witness name -> when `cosign_missing` may ask it again
        # One request at a time per witness: a retry of an older checkpoint racing the request
        # for a newer one would otherwise reach the witness second and read as a rollback.
        self._locks: dict[str, asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _last_sizes(self) -> None:
        if self._known:
            return
        async with reading(self._engine) as conn:
            for peer in self.peers:
                size = (await conn.execute(
                    select(tables.cosignatures.c.size).where(tables.cosignatures.c.witness == peer.verifier.name)
                    .order_by(tables.cosignatures.c.size.desc()).limit(1))).scalar()
                self._known[peer.verifier.name] = int(size or 0)

    async def cosign(self, size: int, note: str) -> list[str]:
        """Cosignature lines for the checkpoint `note` of `size`, from every witness that gives one."""
        return await self._ask_all(self.peers, size, note, retry=False)

    async def cosign_missing(self, size: int, note: str, have: Sequence[str]) -> list[str]:
        """`have` (the cosignature lines the checkpoint carries) and the lines of the configured
        witnesses missing from it that are due for another try; asks nobody before that."""
        present = {line.removeprefix(SIG_PREFIX).split(" ", 1)[0] for line in have}
        now = self._clock.time()
        due = [peer for peer in self.peers
               if peer.verifier.name not in present and self._retry_at.get(peer.verifier.name, 0.0) <= now]
        return [*have, *await self._ask_all(due, size, note, retry=True)] if due else list(have)

    async def _ask_all(self, peers: Sequence[WitnessPeer], size: int, note: str, *, retry: bool) -> list[str]:
        if not peers:
            return []
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout),
                                                  cookie_jar=aiohttp.DummyCookieJar())  # no state between witnesses
        await self._last_sizes()
        session = self._session
        results = await asyncio.gather(*(self._paced(session, peer, size, note, retry) for peer in peers))
        return [line for line in results if line]

    async def _paced(self, session: aiohttp.ClientSession, peer: WitnessPeer, size: int, note: str,
                     retry: bool) -> str | None:
        """One try, and when the next one may be: at once after a success, later after each failure."""
        name = peer.verifier.name
        async with self._locks.setdefault(name, asyncio.Lock()):
            if retry and self._known.get(name, 0) > size:
                return None  # it cosigned a newer checkpoint meanwhile: this retry is superseded
            line = await self._ask(session, peer, size, note)
        if line is not None:
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            return line
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        self._retry_at[name] = self._clock.time() + min(RETRY_MAX, RETRY_BASE * 2 ** min(failures - 1, 16))
        return None

    async def _ask(self, session: aiohttp.ClientSession, peer: WitnessPeer, size: int, note: str) -> str | None:
        name = peer.verifier.name
        old = min(self._known.get(name, 0), size)
        try:
            for _attempt in range(2):
                proof = await self._proof(old, size) if 0 < old < size else []
                async with session.post(f"{peer.url}/add-checkpoint", data=format_add_checkpoint(
                        old, proof, note)) as resp:
                    text = await resp.text()
                    if resp.status == 409 and resp.content_type == SIZE_CONTENT_TYPE:
                        their = int(text.strip())
                        if their > size:
                            log.critical("witness %s has cosigned size %d but this log has only %d entries: "
                                         "the log was rolled back", name, their, size)
                            return None
                        if their == old:
                            log.error("witness %s refused checkpoint %d: %s", name, size, text.strip())
                            return None
                        old = self._known[name] = their
                        continue
                    if resp.status != 200:
                        log.error("witness %s refused checkpoint %d (%d): %s", name, size, resp.status, text[:200])
                        return None
                    cosigs = verify_cosignatures(note + text, [peer.verifier], now=self._clock.time())
                    break
            else:
                return None
        except (TimeoutError, aiohttp.ClientError, ValueError, VerificationError) as exc:
            log.warning("witness %s did not cosign checkpoint %d: %s", name, size, exc)
            return None
        if not cosigs:
            log.error("witness %s answered without a cosignature by its key", name)
            return None
        cosig = cosigs[0]
        self._known[name] = size
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(tables.cosignatures).values(
                    size=size, witness=name, key_id=cosig.key_id.hex(), line=cosig.line, ts=cosig.timestamp))
        except IntegrityError:
            pass  # another gateway process stored this witness's line for this size
        return cosig.line


async def stored_cosignatures(engine: AsyncEngine, size: int) -> list[str]:
    async with reading(engine) as conn:
        rows = await conn.execute(select(tables.cosignatures.c.line).where(tables.cosignatures.c.size == size)
                                  .order_by(tables.cosignatures.c.witness))
        return [str(r.line) for r in rows]
