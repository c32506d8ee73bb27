"""Helpers for the audit tests (not a test module): an independent RFC 9162 verifier written from the
RFC's text (it imports nothing of audit/), the naive reference tree, and a way to fill an audit
database directly."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update

from audit import tables
from audit.chain import GENESIS_PREV, chain_entry
from audit.rfc9162 import Frontier
from credcore.db import make_engine

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_leaf(leaf: bytes) -> bytes:
    return sha(b"\x00" + leaf)


def rfc_node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01" + left + right)


def mth(d: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over leaf hashes, by the definition."""
    if not d:
        return sha(b"")
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return rfc_node(mth(d[:k]), mth(d[k:]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]), by the definition."""
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    return path(m, d[:k]) + [mth(d[k:])] if m < k else path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """RFC 9162 2.1.4.1 SUBPROOF(m, D[n], b), by the definition."""
    if m == len(d):
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def independent_verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                                 root: bytes) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = rfc_node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = rfc_node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def independent_verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                                   proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2, step by step (first > 0)."""
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path_ = list(proof)
    if first & (first - 1) == 0:
        path_.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path_[0]
    for c in path_[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = rfc_node(c, fr), rfc_node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = rfc_node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def checkpoint_fields(note: str) -> tuple[str, int, bytes]:
    """Origin, size and root of a checkpoint note, read from its text lines."""
    origin, size, root = note.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


def entry(n: int, **extra: Any) -> dict[str, Any]:
    when = (T0 + dt.timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
    return {"kind": "access", "time": when, "client_id": f"op-{n % 3}", "uscc": [], "decision": "allow",
            "status": 200, "n": n, **extra}


async def fill_log(url: str, leaves: Sequence[bytes] | None = None,
                   entries: Sequence[dict[str, Any]] = ()) -> list[bytes]:
    """Write a log straight into the audit tables (bypassing the writer, as a bulk load would):
    the given raw leaves, or the given entries chained by prev_hash. Returns the leaves."""
    if leaves is None:
        prev, built = GENESIS_PREV, []
        for item in entries:
            built.append(chain_entry(item, prev))
            prev = rfc_leaf(built[-1]).hex()
        leaves = built
    engine = make_engine(url)
    frontier = Frontier()
    rows, nodes = [], []
    for i, leaf in enumerate(leaves):
        digest = rfc_leaf(leaf)
        rows.append({"idx": i, "leaf": leaf, "leaf_hash": digest, "ts_us": int(T0.timestamp() * 1e6) + i,
                     "client_id": None, "decision": "allow", "status": 200, "kind": "access"})
        nodes += [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in frontier.append(digest) if lv]
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.create_schema)
            if rows:
                await conn.execute(insert(tables.entries), rows)
            if nodes:
                await conn.execute(insert(tables.nodes), nodes)
            last = rfc_leaf(leaves[-1]).hex() if leaves else GENESIS_PREV
            if (await conn.execute(select(tables.head.c.size))).first() is None:
                await conn.execute(insert(tables.head).values(id=1, size=len(leaves), last_hash=last))
            else:
                await conn.execute(update(tables.head).values(size=len(leaves), last_hash=last))
    finally:
        await engine.dispose()
    return list(leaves)


async def credgate(*args: str) -> tuple[int, str, str]:
    """Run the `credgate` command in a child process; exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode()
