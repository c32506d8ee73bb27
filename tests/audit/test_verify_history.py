"""`audit verify` beyond single-row tampering: rolled-back logs (caught by stored or saved checkpoints),
the same answer whether the log is checked in one piece, in chunks or by worker processes, and
pruned entries served by a gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from audit.chain import GENESIS_PREV, chain_entry
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.logcheck import LogMerger, check_chunk, chunk_ranges, sizes_in
from audit.retention import prune
from audit.rfc9162 import root_from_hashes
from audit.verify import verify_database, verify_remote
from audit.writer import AuditWriter
from credcore.clock import FixedClock
from credcore.db import make_engine
from credcore.errors import VerificationError
from tests.audit.support import entry, rfc_leaf
from tests.conftest import Harness

ORIGIN = "credgate.test/audit"


async def grow(url: str, sizes: list[int], start: int = 0, tag: str = "") -> str:
    """Append entries up to each size in turn, signing a checkpoint at each; the last note."""
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    signer = await load_or_create_signer(engine, ORIGIN)
    cp = Checkpointer(engine, signer, origin=ORIGIN)
    note = ""
    n = start
    for size in sizes:
        await asyncio.gather(*(writer.append(entry(i, tag=tag)) for i in range(n, size)))
        n = size
        note = (await cp.sign_latest()).note
    await writer.close()
    await engine.dispose()
    return note


async def roll_back(url: str, to: int, drop_checkpoints: bool) -> None:
    """What an insider with the database does: cut the log back to `to` entries (nodes and head too)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            last = (await conn.execute(text("SELECT leaf_hash FROM audit_entries WHERE idx = :i"), {"i": to - 1})).one()
            await conn.execute(text("DELETE FROM audit_entries WHERE idx >= :n"), {"n": to})
            await conn.execute(text("DELETE FROM audit_subjects WHERE idx >= :n"), {"n": to})
            await conn.execute(text("DELETE FROM audit_records WHERE idx >= :n"), {"n": to})
            await conn.execute(text("DELETE FROM audit_nodes WHERE ((idx + 1) << level) > :n"), {"n": to})
            await conn.execute(text("UPDATE audit_head SET size = :n, last_hash = :h"),
                               {"n": to, "h": bytes(last[0]).hex()})
            if drop_checkpoints:
                await conn.execute(text("DELETE FROM audit_checkpoints WHERE size > :n"), {"n": to})
    finally:
        await engine.dispose()


async def test_an_auditors_saved_checkpoint_catches_a_rollback(tmp_path: Path) -> None:
    """A checkpoint saved earlier (--checkpoint) catches a log cut back and re-grown, even when the insider
    deleted the later checkpoints and re-signed with the log's own key."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    saved = await grow(url, [10, 25, 40])
    await roll_back(url, 25, drop_checkpoints=True)
    await grow(url, [60], start=25, tag="regrown")
    assert "60 entries" in await verify_database(url)
    with pytest.raises(VerificationError, match="inconsistent with the checkpoint of size 40") as exc:
        await verify_database(url, saved=[saved])
    assert exc.value.index == 25 and "rolled back" in exc.value.description
    await roll_back(url, 30, drop_checkpoints=True)
    with pytest.raises(VerificationError, match="truncated/rolled back") as exc:
        await verify_database(url, saved=[saved])
    assert exc.value.index == 30


async def test_a_stored_checkpoint_that_no_longer_matches_names_the_rewritten_range(tmp_path: Path) -> None:
    """Entries rewritten consistently after the checkpoint of 25 fail against the one of 40 from index 25."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await grow(url, [10, 25, 40])
    await roll_back(url, 25, drop_checkpoints=False)
    engine = make_engine(url)
    try:
        writer = AuditWriter(engine)
        await writer.start()
        await asyncio.gather(*(writer.append(entry(i, tag="regrown")) for i in range(25, 45)))
        await writer.close()
    finally:
        await engine.dispose()
    with pytest.raises(VerificationError, match="entries 25..39 were rewritten") as exc:
        await verify_database(url)
    assert exc.value.index == 25


@pytest.mark.parametrize("damage", [None, 37, 64])
async def test_workers_and_chunks_give_the_same_answer(tmp_path: Path, damage: int | None) -> None:
    """Worker processes over 16-entry chunks report exactly what one in-process pass reports."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await grow(url, [17, 50, 64, 100])
    if damage is not None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE audit_entries SET leaf = replace(leaf, 'op-', 'op9') WHERE idx = :i"),
                                   {"i": damage})
        finally:
            await engine.dispose()

    async def outcome(**kw: Any) -> tuple[int | None, str]:
        try:
            return None, await verify_database(url, **kw)
        except VerificationError as exc:
            return exc.index, exc.description

    one = await outcome(jobs=1)
    chunked = await outcome(jobs=1, chunk_size=16)
    parallel = await outcome(jobs=2, chunk_size=16, parallel_from=0)
    assert one == chunked == parallel
    assert one[0] == damage and ("100 entries" in one[1] if damage is None else f"entry {damage}: edited" in one[1])


def chain(n: int) -> list[bytes]:
    leaves, prev = [], GENESIS_PREV
    for i in range(n):
        leaves.append(chain_entry({"n": i, "t": "x" * (i % 5)}, prev))
        prev = rfc_leaf(leaves[-1]).hex()
    return leaves


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 70), st.sampled_from([1, 2, 4, 8, 32, 128]), st.data())
def test_chunking_never_changes_the_result(n: int, chunk: int, data: st.DataObject) -> None:
    """Any chunk size gives the same first error and the same root at every size as one whole pass."""
    leaves: list[bytes | None] = list(chain(n))
    hashes = [rfc_leaf(leaf) for leaf in leaves if leaf is not None]
    stored: list[bytes | None] = list(hashes)
    kind = data.draw(st.sampled_from(["none", "edit", "drop", "swap", "prune"]))
    i = data.draw(st.integers(0, n - 1))
    if kind == "edit":
        leaves[i] = (leaves[i] or b"").replace(b'"n":', b'"m":')
    elif kind == "swap" and i + 1 < n:
        leaves[i], leaves[i + 1] = leaves[i + 1], leaves[i]
        stored[i], stored[i + 1] = stored[i + 1], stored[i]
    elif kind == "prune":
        leaves[i] = None
    rows = [(j, leaf, stored[j]) for j, leaf in enumerate(leaves) if not (kind == "drop" and j == i)]
    sizes = list(range(1, n + 1))

    def run(size: int) -> tuple[tuple[int, str] | None, dict[int, bytes]]:
        merger = LogMerger(size)
        for lo, hi in chunk_ranges(n, size):
            context = [r for r in rows if lo - 2 <= r[0] < hi + 1]
            report = check_chunk(context, lo, hi, sizes_in(sizes, lo, hi), end=n)
            merger.add(report)
            if report.error:
                return report.error, merger.roots
        return None, merger.roots

    whole = run(128)
    assert run(chunk) == whole
    if kind == "none":
        assert whole[0] is None
        assert all(whole[1][s] == root_from_hashes(hashes[:s]) for s in sizes)


async def test_remote_verify_accepts_pruned_entries(make_gateway: Any, tmp_path: Path, sample_code: str) -> None:
    """A gateway serves pruned entries as their leaf hash; `verify --url` links across them."""
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    when = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    for i in range(6):
        await writer.append({**entry(i), "time": (when + dt.timedelta(days=i)).isoformat().replace("+00:00", "Z")})
    await writer.close()
    await prune(engine, dt.datetime(2021, 1, 4, tzinfo=dt.UTC), clock=FixedClock("2026-03-02T00:00:00+00:00"))
    await engine.dispose()
    gw: Harness = await make_gateway(db_url=url)
    token = await gw.token("op")
    await gw.get(f"/v1/entities/{sample_code}", token)
    entries = await (await gw.get("/audit/entries?start=0&end=5", await gw.token("auditor"), purpose=None)).json()
    assert entries["entries"][0]["leaf"] is None and len(entries["entries"][0]["leaf_hash"]) == 44
    base = str(gw.client.make_url("")).rstrip("/")
    await asyncio.sleep(0.5)
    report = await verify_remote(base, "auditor", gw.secrets["auditor"], clock_time=dt.datetime.now(dt.UTC).timestamp())
    assert "(3 pruned)" in report
