"""`credgate audit trace`: find the entries that released leaked records, in a database or through a
gateway's search API, and report the ranked operators with the entries and their inclusion
proofs as evidence (the matching and ranking rules are in audit/trace.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson
from sqlalchemy import select

from audit import tables
from audit.auditor import auditor_headers
from audit.checkpoint import parse_checkpoint
from audit.reader import AuditReader
from audit.trace import LeakedRecord, lookup_keys, match, rank
from credcore.db import make_engine, reading
from credcore.errors import ConfigError, VerificationError

BATCH = 500


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build_report(leaked: Sequence[LeakedRecord], entries: dict[int, dict[str, Any]], leaves: dict[int, bytes],
                 note: str | None, proofs: dict[int, list[bytes]]) -> dict[str, Any]:
    hits = match(leaked, entries)
    suspects = rank(hits)
    matched = set().union(*(h.exact | h.by_id for h in hits.values())) if hits else set()
    tree_size = parse_checkpoint(note[: note.rfind("\n\n") + 1]).size if note else 0
    return {
        "leaked_records": len(leaked),
        "checkpoint": note,
        "tree_size": tree_size,
        "suspects": [{
            "operator": s.operator,
            "records_matched_exactly": len(s.exact),
            "records_matched_by_id_only": len(s.by_id - s.exact),
            "entries": [{
                "index": h.index,
                "time": h.entry.get("time"),
                "path": (h.entry.get("request") or {}).get("path"),
                "fields": h.entry.get("fields"),
                "leaked_lines_exact": sorted(h.exact),
                "leaked_lines_by_id": sorted(h.by_id - h.exact),
                "leaf": _b64(leaves[h.index]) if h.index in leaves else None,
                "inclusion": [_b64(p) for p in proofs[h.index]] if h.index in proofs else None,
            } for h in s.hits],
        } for s in suspects],
        "unmatched_lines": sorted({r.line for r in leaked} - matched),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['leaked_records']} leaked record(s); evidence proven against the checkpoint of size "
             f"{report['tree_size']}"]
    if not report["suspects"]:
        lines.append("no operator received these records according to the audit log")
    for rank_no, s in enumerate(report["suspects"], 1):
        indices = ", ".join(str(e["index"]) for e in s["entries"][:20])
        more = " …" if len(s["entries"]) > 20 else ""
        lines.append(f"{rank_no}. {s['operator']}: {s['records_matched_exactly']} exact, "
                     f"{s['records_matched_by_id_only']} by id only, in {len(s['entries'])} entr(y/ies): "
                     f"{indices}{more}")
    if report["unmatched_lines"]:
        lines.append(f"unmatched leaked records (lines): {report['unmatched_lines'][:50]}")
    return "\n".join(lines)


async def trace_database(url: str, leaked: Sequence[LeakedRecord]) -> dict[str, Any]:
    digests, ids = lookup_keys(leaked)
    engine = make_engine(url)
    try:
        r, e = tables.records, tables.entries
        found: set[int] = set()
        async with reading(engine) as conn:
            for column, values in ((r.c.sha256, digests), (r.c.record_id, ids)):
                for start in range(0, len(values), BATCH):
                    rows = await conn.execute(select(r.c.idx).where(column.in_(values[start:start + BATCH])))
                    found.update(int(row.idx) for row in rows)
            leaves: dict[int, bytes] = {}
            wanted = sorted(found)
            for start in range(0, len(wanted), BATCH):
                rows = await conn.execute(select(e.c.idx, e.c.leaf).where(e.c.idx.in_(wanted[start:start + BATCH])))
                leaves.update({int(row.idx): bytes(row.leaf) for row in rows if row.leaf is not None})
        reader = AuditReader(engine)
        note = await reader.latest_checkpoint_note()
        size = parse_checkpoint(note[: note.rfind("\n\n") + 1]).size if note else 0
        entries = {i: orjson.loads(leaf) for i, leaf in leaves.items()}
        hits = match(leaked, entries)
        proofs = await reader.inclusion_proofs([i for i in hits if i < size], size) if size else {}
    finally:
        await engine.dispose()
    return build_report(leaked, {i: entries[i] for i in hits}, leaves, note, proofs)


async def trace_remote(url: str, client_id: str, client_secret: str, leaked: Sequence[LeakedRecord]) -> dict[str, Any]:
    base = url.rstrip("/")
    digests, ids = lookup_keys(leaked)
    entries: dict[int, dict[str, Any]] = {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            headers = await auditor_headers(session, base, client_id, client_secret)
            limit = asyncio.Semaphore(8)

            async def search(param: str, value: str) -> None:
                cursor = ""
                async with limit:
                    while True:
                        params = {param: value, "limit": "1000", **({"cursor": cursor} if cursor else {})}
                        async with session.get(f"{base}/audit/search", params=params, headers=headers) as resp:
                            if resp.status != 200:
                                raise ConfigError(f"the gateway refused /audit/search ({resp.status}).")
                            page = await resp.json()
                        entries.update({int(h["index"]): h["entry"] for h in page["entries"]})
                        if not page.get("next"):
                            return
                        cursor = page["next"]

            await asyncio.gather(*[search("record_sha256", d) for d in digests], *[search("record_id", i) for i in ids])
            async with session.get(f"{base}/audit/checkpoint") as resp:
                note = await resp.text()
            size = parse_checkpoint(note[: note.rfind("\n\n") + 1]).size
            hits = match(leaked, entries)
            proofs: dict[int, list[bytes]] = {}
            leaves: dict[int, bytes] = {}
            for index in sorted(hits):
                params = {"start": str(index), "end": str(index + 1)}
                async with session.get(f"{base}/audit/entries", params=params, headers=headers) as resp:
                    for item in (await resp.json())["entries"]:
                        if item.get("leaf") is not None:
                            leaves[index] = base64.b64decode(item["leaf"], validate=True)
                if index < size:
                    params = {"index": str(index), "tree_size": str(size)}
                    async with session.get(f"{base}/audit/proof/inclusion", params=params, headers=headers) as resp:
                        proofs[index] = [base64.b64decode(h) for h in (await resp.json())["hashes"]]
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {base}: {exc}") from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise VerificationError(f"the gateway's answer is malformed: {exc}") from exc
    return build_report(leaked, {i: entries[i] for i in hits}, leaves, note, proofs)
