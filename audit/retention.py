"""Retention: pruning the payload of old entries while the log stays verifiable.

Rules:
1. The retention period is at least six months (the Cybersecurity Law's minimum for network
   logs; six calendar months are at most 184 days) and three years by default; a shorter
   setting is a configuration error, and no entry younger than the period is ever pruned.
2. Pruning is audited first: a `retention_prune` entry (with `before`, the cutoff, and `up_to`,
   one past the last index that may be pruned) is appended, durably, before any leaf is touched.
   If that append fails, nothing is pruned.
3. Pruning sets the leaf to null and drops what the payload fed (the operator column, the
   company and released-record index rows). The leaf hash, the tree nodes and the checkpoints
   are untouched, so every proof still verifies; the next entry's `prev_hash` commits to the
   pruned leaf's hash, so the chain still links across it (audit/logcheck.py). Retention events
   themselves are never pruned, so `audit verify` can tell an audited prune from a deletion.
4. Rows are pruned in small transactions so that a running gateway's appends never wait long.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.logcheck import PRUNE_KIND
from audit.writer import AuditWriter, subject_codes
from credcore.clock import Clock, rfc3339, system_clock
from credcore.db import reading
from credcore.errors import ConfigError, InvalidParameter

MIN_RETENTION_DAYS = 184
DEFAULT_RETENTION_DAYS = 1096
BATCH = 5000


def check_retention_days(days: int, setting: str = "audit.retention_days") -> int:
    """The period in days, or ConfigError naming the setting if it is under six months."""
    if days < MIN_RETENTION_DAYS:
        raise ConfigError(f"setting '{setting}' must be at least {MIN_RETENTION_DAYS} days (six months, the "
                          f"legal minimum for network logs), not {days}.")
    return days


def latest_cutoff(now: dt.datetime, days: int) -> dt.datetime:
    return now - dt.timedelta(days=check_retention_days(days))


# One company row of one entry, by its whole key: `DELETE ... WHERE idx IN (...)` cannot use the
# key (it starts with the company) and scanned the whole table once per batch.
_s = tables.subjects
SUBJECT_ROW_DELETE = delete(_s).where(_s.c.uscc == bindparam("code"), _s.c.ts_us == bindparam("ts"),
                                      _s.c.idx == bindparam("index"))


def subject_keys(rows: Iterable[Sequence[Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The audit_subjects keys of entries (idx, ts_us, leaf), read from their leaves as the writer
    wrote them, and the indices of leaves that cannot be read."""
    keys: list[dict[str, Any]] = []
    unreadable: list[int] = []
    for row in rows:
        idx, ts_us, leaf = row[0], row[1], row[2]
        try:
            entry = orjson.loads(leaf)
            codes = subject_codes(entry) if isinstance(entry, dict) else None
        except (orjson.JSONDecodeError, TypeError):
            codes = None
        if codes is None:
            unreadable.append(int(idx))
            continue
        keys += [{"code": code, "ts": int(ts_us), "index": int(idx)} for code in codes]
    return keys, unreadable


@dataclass(frozen=True)
class PruneResult:
    event_index: int  # the audit entry that records the pruning
    up_to: int
    pruned: int


async def prune(engine: AsyncEngine, before: dt.datetime, *, retention_days: int = DEFAULT_RETENTION_DAYS,
                clock: Clock = system_clock, actor: str | None = None) -> PruneResult:
    """Prune the payload of entries older than `before` (audited first; see the module rules)."""
    if before.tzinfo is None:
        raise InvalidParameter("before", "--before must carry a timezone offset (or be a date).")
    cutoff = latest_cutoff(clock.now(), retention_days)
    if before > cutoff:
        raise InvalidParameter("before", f"--before {rfc3339(before)} is inside the retention period of "
                                         f"{retention_days} days: the latest allowed is {rfc3339(cutoff)}.")
    e = tables.entries
    before_us = int(before.timestamp() * 1_000_000)
    async with reading(engine) as conn:
        last = (await conn.execute(select(func.max(e.c.idx)).where(e.c.ts_us < before_us))).scalar()
    up_to = int(last) + 1 if last is not None else 0
    writer = AuditWriter(engine)
    await writer.start()
    try:
        event = await writer.append({
            "kind": PRUNE_KIND, "time": rfc3339(clock.now()), "client_id": actor, "uscc": [],
            "decision": "allow", "status": 0, "before": rfc3339(before), "up_to": up_to,
            "retention_days": retention_days,
            "reason": "retention: payload of entries older than the cutoff is removed; leaf hashes are kept",
        })
    finally:
        await writer.close()
    pruned = 0
    for lo in range(0, up_to, BATCH):
        hi = min(lo + BATCH, up_to)
        old = and_(e.c.idx >= lo, e.c.idx < hi, e.c.ts_us < before_us, e.c.leaf.is_not(None), e.c.kind != PRUNE_KIND)
        async with engine.begin() as conn:
            rows = (await conn.execute(select(e.c.idx, e.c.ts_us, e.c.leaf).where(old))).all()
            if not rows:
                continue
            chosen = [int(row.idx) for row in rows]
            keys, unreadable = subject_keys(rows)
            if keys:
                await conn.execute(SUBJECT_ROW_DELETE, keys)
            if unreadable:  # no codes to look up by: these few are found by a scan
                await conn.execute(delete(tables.subjects).where(tables.subjects.c.idx.in_(unreadable)))
            await conn.execute(delete(tables.records).where(tables.records.c.idx.in_(chosen)))
            done = await conn.execute(update(e).where(e.c.idx.in_(chosen)).values(leaf=None, client_id=None))
            pruned += done.rowcount
    return PruneResult(event, up_to, pruned)
