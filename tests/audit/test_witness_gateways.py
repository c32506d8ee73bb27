"""Two gateways in one process witness each other's logs (C2SP tlog-witness over loopback): each serves
its checkpoint with the other's cosignature, `audit verify --min-witnesses` counts them, a
forked or rolled-back checkpoint signed with the real log key is refused by the witness, and a
witness that was down when a checkpoint was signed is asked again (with backoff) once it is up."""

from __future__ import annotations

import base64
import datetime as dt
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.checkpointer import load_or_create_signer
from audit.cosignature import CosignatureVerifier, verify_cosignatures
from audit.note import generate_signer
from audit.verify import verify_database
from audit.witness import format_add_checkpoint
from audit.witnessing import (
    RETRY_BASE,
    WitnessClient,
    load_or_create_cosigner,
    parse_witness_peers,
    stored_cosignatures,
)
from credcore.clock import FixedClock
from credcore.db import make_engine
from credcore.errors import VerificationError
from gateway.app import RUNNER_LIMITS, build_app
from gateway.config import load_settings
from tests.audit.support import checkpoint_fields, credgate
from tests.conftest import wait_for


@dataclass
class Region:
    name: str
    db: str
    port: int
    log_key: str = ""
    witness_key: str = ""
    signer: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def provision(region: Region) -> None:
    """What a region does before a partnership: make its log key and witness key, publish both."""
    engine = make_engine(region.db)
    try:
        region.signer = await load_or_create_signer(engine, f"{region.name}.example/audit")
        region.log_key = region.signer.verifier_key
        region.witness_key = (await load_or_create_cosigner(engine, f"{region.name}.example/witness")).verifier_key
    finally:
        await engine.dispose()


@pytest.fixture
async def regions(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[Region, Region]]:
    a = Region("a", f"sqlite:///{tmp_path / 'a.db'}", free_port())
    b = Region("b", f"sqlite:///{tmp_path / 'b.db'}", free_port())
    for region in (a, b):
        await provision(region)
    servers = []
    for me, partner in ((a, b), (b, a)):
        servers.append(await start_gateway(me, partner, store_url))
    yield a, b
    for server in servers:
        await server.close()


async def traffic(region: Region, session: aiohttp.ClientSession, n: int) -> None:
    for _ in range(n):
        async with session.get(f"{region.url}/v1/entities/91110108551385082Q") as resp:
            assert resp.status == 401  # refused, and audited


async def cosigned_checkpoint(region: Region, by: Region, session: aiohttp.ClientSession, size: int) -> str:
    found: list[str] = []

    async def ready() -> bool:
        async with session.get(f"{region.url}/audit/checkpoint") as resp:
            found[:] = [await resp.text()]
        cosigs = verify_cosignatures(found[0], [CosignatureVerifier.from_key(by.witness_key)])
        return checkpoint_fields(found[0])[1] >= size and bool(cosigs)

    assert await wait_for(ready, timeout=8), found
    return found[0]


async def test_partners_cosign_each_others_checkpoints(regions: tuple[Region, Region]) -> None:
    """Each region serves its checkpoint with the partner witness's cosignature, and verify counts it."""
    a, b = regions
    async with aiohttp.ClientSession() as session:
        await traffic(a, session, 5)
        await traffic(b, session, 3)
        note_a = await cosigned_checkpoint(a, b, session, 5)
        note_b = await cosigned_checkpoint(b, a, session, 3)
        async with session.get(f"{a.url}/audit/keys") as resp:
            assert (await resp.json())["witness"] == a.witness_key
    assert "— b.example/witness " in note_a and "— a.example/witness " in note_b
    code, out, err = await credgate("audit", "verify", "--db", a.db, "--witness", b.witness_key,
                                    "--min-witnesses", "1")
    assert code == 0 and "cosigned by 1 witness(es) (b.example/witness)" in out, err
    stranger = a.witness_key  # a key that never cosigns a's own log
    with pytest.raises(VerificationError, match="no checkpoint is cosigned by 2"):
        await verify_database(a.db, witnesses=[b.witness_key, stranger], min_witnesses=2)


async def test_a_forked_or_rolled_back_log_is_refused_by_the_partner(regions: tuple[Region, Region]) -> None:
    """Checkpoints signed with a's real key but for another tree, or an older size, get 409/422 from b."""
    a, b = regions
    async with aiohttp.ClientSession() as session:
        await traffic(a, session, 4)
        note = await cosigned_checkpoint(a, b, session, 4)
        origin, size, root = checkpoint_fields(note)
        forged_root = bytes(32)

        async def submit(old: int, proof: list[bytes], cp: Checkpoint) -> tuple[int, str, str]:
            signer = a.signer if cp.origin == origin else generate_signer(cp.origin)
            body = format_add_checkpoint(old, proof, sign_checkpoint(cp, [signer]))
            async with session.post(f"{b.url}/witness/add-checkpoint", data=body) as resp:
                return resp.status, resp.content_type, await resp.text()

        status, ctype, text = await submit(size, [], Checkpoint(origin, size, forged_root))
        assert (status, ctype, text) == (409, "text/x.tlog.size", f"{size}\n")  # same size, another root: a fork
        status, ctype, text = await submit(max(size - 2, 0), [bytes(32)], Checkpoint(origin, size - 1, root))
        assert status == 409 and text == f"{size}\n"  # rolled back: it must extend what was cosigned
        status, _, _ = await submit(size, [base64.b64decode("A" * 43 + "=")], Checkpoint(origin, size + 3, root))
        assert status == 422  # a bigger tree that does not extend the cosigned one
        status, _, _ = await submit(size, [], Checkpoint("c.example/audit", 1, root))
        assert status == 404
        async with session.get(f"{b.url}/audit/checkpoint") as resp:
            assert resp.status == 200


async def start_gateway(me: Region, partner: Region, store_url: str) -> TestServer:
    """`me` as a gateway on its port: the witness of `partner`'s log, asking `partner` to cosign."""
    settings = load_settings(environ={}, overrides={
        "database": {"url": me.db},
        "upstream": {"url": store_url},
        "audit": {"origin": f"{me.name}.example/audit", "checkpoint_interval": 0.2,
                  "witness_name": f"{me.name}.example/witness", "witness_logs": partner.log_key,
                  "witnesses": f"{partner.witness_key}@{partner.url}/witness"},
    })
    server = TestServer(build_app(settings), host="127.0.0.1", port=me.port)
    await server.start_server(**RUNNER_LIMITS)
    return server


async def test_a_witness_that_was_down_is_asked_again_with_backoff(tmp_path: Path, store_url: str) -> None:
    """A witness down when a checkpoint was signed is not asked again before its backoff has
    passed (even once it is up), then is, and cosigns; a witness already on the note is not asked."""
    a = Region("a", f"sqlite:///{tmp_path / 'a.db'}", free_port())
    b = Region("b", f"sqlite:///{tmp_path / 'b.db'}", free_port())
    for region in (a, b):
        await provision(region)
    clock = FixedClock(dt.datetime.now(dt.UTC))
    engine = make_engine(a.db)

    async def no_proof(first: int, second: int) -> list[bytes]:
        raise AssertionError("a first meeting needs no consistency proof")

    client = WitnessClient(engine, parse_witness_peers(f"{b.witness_key}@{b.url}/witness"), no_proof, clock=clock)
    note = sign_checkpoint(Checkpoint("a.example/audit", 3, bytes(range(32))), [a.signer])
    server = None
    try:
        assert await client.cosign(3, note) == []  # b is not running: connection refused
        server = await start_gateway(b, a, store_url)
        assert await client.cosign_missing(3, note, []) == []  # up, but its backoff has not passed
        clock.advance(RETRY_BASE)
        [line] = await client.cosign_missing(3, note, [])
        assert verify_cosignatures(note + line, [CosignatureVerifier.from_key(b.witness_key)])
        assert await client.cosign_missing(3, note, [line]) == [line]  # b is on the note: nobody is asked
        assert await stored_cosignatures(engine, 3) == [line]
    finally:
        await client.close()
        if server is not None:
            await server.close()
        await engine.dispose()


async def test_a_partner_started_later_cosigns_a_quiet_log(tmp_path: Path, store_url: str) -> None:
    """Gateway a starts while its partner's witness is down, and its log then stays quiet: once b
    is up, a's served checkpoint gets b's cosignature anyway, with no new entry to prompt it."""
    a = Region("a", f"sqlite:///{tmp_path / 'a.db'}", free_port())
    b = Region("b", f"sqlite:///{tmp_path / 'b.db'}", free_port())
    for region in (a, b):
        await provision(region)
    servers = [await start_gateway(a, b, store_url)]
    try:
        async with aiohttp.ClientSession() as session:
            await traffic(a, session, 2)
            async with session.get(f"{a.url}/audit/checkpoint") as resp:
                assert "— b.example/witness" not in await resp.text()
            size = await served_size(a, session, 2)
            servers.append(await start_gateway(b, a, store_url))
            note = await cosigned_checkpoint(a, b, session, size)
            assert checkpoint_fields(note)[1] == size  # the same checkpoint: no entry was added
    finally:
        for server in servers:
            await server.close()


async def served_size(region: Region, session: aiohttp.ClientSession, size: int) -> int:
    """Wait until the served checkpoint covers at least `size` entries; its size."""
    seen: list[int] = []

    async def covered() -> bool:
        async with session.get(f"{region.url}/audit/checkpoint") as resp:
            seen[:] = [checkpoint_fields(await resp.text())[1]]
        return seen[0] >= size

    assert await wait_for(covered, timeout=5), seen
    return seen[0]
