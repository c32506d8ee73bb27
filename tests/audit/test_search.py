"""Search for security teams: exactly the entries that match, oldest first, with cursor paging, on
SQLite and the real PostgreSQL; the CLI; and the index the company query runs on."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from audit.reader import AuditReader, search_statement
from audit.search import parse_search
from audit.writer import AuditWriter
from credcore.db import make_engine
from credcore.errors import InvalidParameter
from gateway.cli import main

CODES = ["91110108551385082Q", "91350100M000100Y43", "911101019075793801"]
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
N = 240


def make_entry(n: int) -> dict[str, Any]:
    when = T0 + dt.timedelta(days=n * 3, microseconds=n)
    codes = [CODES[n % 3]] + ([CODES[(n + 1) % 3]] if n % 5 == 0 else [])
    return {"kind": "access", "time": when.isoformat().replace("+00:00", "Z"), "client_id": f"op-{n % 4}",
            "uscc": codes, "decision": ["allow", "deny", "allow", "error"][n % 4 if n % 7 else 1], "status": 200,
            "records": [{"id": f"CF-{n % 10:06d}", "sha256": f"{n % 10:064x}"}], "n": n}


async def build(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    try:
        for start in range(0, N, 60):
            await asyncio.gather(*(writer.append(make_entry(n)) for n in range(start, start + 60)))
    finally:
        await writer.close()
        await engine.dispose()
    return [make_entry(n) for n in range(N)]


def naive(entries: list[dict[str, Any]], q: dict[str, str]) -> list[int]:
    """The same search written plainly over every entry (indices are in append order here)."""
    out = []
    for i, e in enumerate(entries):
        when = dt.datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
        if (("uscc" in q and q["uscc"] not in e["uscc"]) or ("operator" in q and e["client_id"] != q["operator"])
                or ("decision" in q and e["decision"] != q["decision"])
                or ("since" in q and when < dt.datetime.fromisoformat(q["since"]))
                or ("until" in q and when >= dt.datetime.fromisoformat(q["until"]))
                or ("record_id" in q and q["record_id"] not in [r["id"] for r in e["records"]])
                or ("record_sha256" in q and q["record_sha256"] not in [r["sha256"] for r in e["records"]])):
            continue
        out.append(i)
    return out


QUERIES = [
    {"uscc": CODES[0]},
    {"uscc": CODES[1], "since": "2025-06-01T00:00:00+08:00"},
    {"uscc": CODES[2], "since": "2025-03-01T00:00:00Z", "until": "2026-01-01T00:00:00Z", "decision": "allow"},
    {"operator": "op-1"},
    {"operator": "op-2", "uscc": CODES[2]},
    {"decision": "deny"},
    {"since": "2026-06-01T00:00:00Z"},
    {"record_id": "CF-000003"},
    {"record_sha256": f"{7:064x}", "uscc": CODES[1]},
    {"uscc": "91370202MARGFLKR86"},
]


async def pages(reader: AuditReader, q: dict[str, str], limit: int) -> list[int]:
    got: list[int] = []
    cursor = ""
    while True:
        hits, following = await reader.search(parse_search({**q, "cursor": cursor, "limit": str(limit)}))
        got += [i for i, _ in hits]
        assert len(hits) <= limit
        if following is None:
            return got
        assert following.endswith(f".{hits[-1][0]}")
        cursor = following


async def test_search_returns_exactly_the_matching_entries_on_sqlite(tmp_path: Path) -> None:
    """Every query returns exactly the naive answer, oldest first, whole or page by page (SQLite)."""
    await search_matches_naive(f"sqlite:///{tmp_path / 'audit.db'}")


async def test_search_returns_exactly_the_matching_entries_on_postgresql(pg_url: str) -> None:
    """Every query returns exactly the naive answer, oldest first, whole or page by page (PostgreSQL)."""
    await search_matches_naive(pg_url)


async def search_matches_naive(db: str) -> None:
    entries = await build(db)
    engine = make_engine(db)
    try:
        reader = AuditReader(engine)
        for q in QUERIES:
            expected = naive(entries, q)
            assert await pages(reader, q, 1000) == expected, q
            assert await pages(reader, q, 7) == expected, q
        hits, _ = await reader.search(parse_search({"uscc": CODES[0], "limit": "3"}))
        assert [e["n"] for _, e in hits] == [i for i in naive(entries, {"uscc": CODES[0]})[:3]]
    finally:
        await engine.dispose()


def test_parameters_are_refused_by_name() -> None:
    """Each malformed parameter is named; nothing else is looked at first."""
    for params, name in [({"uscc": "123"}, "uscc"), ({"decision": "ALLOW"}, "decision"), ({"since": "2025"}, "since"),
                         ({"until": "2025-01-01T00:00:00"}, "until"), ({"cursor": "15"}, "cursor"),
                         ({"limit": "1001"}, "limit"), ({"record_sha256": "AB" * 32}, "record_sha256"),
                         ({"record_id": "x\ny"}, "record_id")]:
        with pytest.raises(InvalidParameter) as exc:
            parse_search(params)
        assert exc.value.parameter == name and f"'{name}'" in exc.value.description


async def test_company_search_runs_on_the_subject_index(tmp_path: Path) -> None:
    """"Who accessed company X since T" seeks the company's time range in its index; no scan, no sort."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await build(url)
    engine = make_engine(url)
    try:
        query = search_statement(parse_search({"uscc": CODES[0], "since": "2025-06-01T00:00:00Z"}))
        sql = str(query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            plan = " | ".join(str(r[-1]) for r in await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    finally:
        await engine.dispose()
    # audit_subjects is keyed by (uscc, ts_us, idx) and audit_entries by idx as its rowid.
    assert "SEARCH audit_subjects USING PRIMARY KEY (uscc=? AND ts_us>?)" in plan, plan
    assert "SEARCH audit_entries USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


def test_search_command_follows_the_cursor(tmp_path: Path) -> None:
    """`credgate audit search --db --uscc --since --all` prints every hit as a JSON line, oldest first."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    entries = asyncio.run(build(url))
    result = CliRunner().invoke(main, ["audit", "search", "--db", url, "--uscc", CODES[1], "--since", "2025-06-01",
                                       "--limit", "5", "--all"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [h["index"] for h in lines] == naive(entries, {"uscc": CODES[1], "since": "2025-06-01T00:00:00+08:00"})
    bad = CliRunner().invoke(main, ["audit", "search", "--db", url, "--uscc", "BAD"])
    assert bad.exit_code == 2 and "'uscc'" in bad.output
