"""The demo's simulated agency mirror: exactly its three discrepancies are found, no more."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestServer

from consistency.check import run_check
from credcore.clock import CST
from credstore.agency_mirror import make_agency_snapshot, serve_mirror_app

AS_OF = dt.date(2025, 10, 20)


def feed(f: SimpleNamespace) -> list[dict[str, Any]]:
    """Twenty disclosed penalties, two repaired long ago, two expired long ago."""
    records = [f.record(n, legal_representative="张三",
                        legal_representative_id_number=f.resident_id()) for n in range(1, 21)]
    records += [f.record(n, status="repaired", removed_at="2025-06-02T10:00:00+08:00")
                for n in (21, 22)]
    records += [f.record(n, disclosure_end="2025-07-01") for n in (23, 24)]
    return records


def test_snapshot_has_the_three_violations_only(f: SimpleNamespace, tmp_path: Path) -> None:
    """Removal, fine and expiry are flagged; the reformatted record is not."""
    records = feed(f)
    snapshot = make_agency_snapshot(records, seed=7, as_of=AS_OF)
    assert all("legal_representative_id_number" not in r for r in snapshot)
    assert any(str(r.get("fine_amount", "")).endswith("元") for r in snapshot)
    assert any("年" in r["decision_date"] for r in snapshot)
    authority = f.write(tmp_path / "a.jsonl", records)
    agency = f.write(tmp_path / "g.jsonl", snapshot)
    as_of = dt.datetime.combine(AS_OF, dt.time(12), CST)
    report = asyncio.run(run_check(str(authority), [("mirror", str(agency))], as_of))
    found = collections.Counter(x["class"] for x in report.agencies[0].findings)
    assert found == {"content_mismatch": 1, "shown_after_removal": 1, "shown_after_expiry": 1}


def test_snapshot_is_deterministic(f: SimpleNamespace) -> None:
    """Same records, seed and date: same snapshot; another seed may pick other records."""
    records = feed(f)
    one = make_agency_snapshot(records, seed=1, as_of=AS_OF)
    assert one == make_agency_snapshot(records, seed=1, as_of=AS_OF)
    assert records == feed(f)  # the input is not modified


async def test_served_as_jsonl(aiohttp_server: Callable[..., Awaitable[TestServer]],
                               f: SimpleNamespace) -> None:
    """GET /agency.jsonl answers the snapshot as JSON Lines."""
    snapshot = make_agency_snapshot(feed(f), seed=7, as_of=AS_OF)
    server = await aiohttp_server(serve_mirror_app(snapshot))
    from aiohttp import ClientSession

    async with ClientSession() as session, session.get(server.make_url("/agency.jsonl")) as resp:
        assert resp.status == 200
        lines = (await resp.text()).splitlines()
    assert [json.loads(line) for line in lines] == snapshot
