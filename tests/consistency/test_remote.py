"""URL sources against aiohttp test servers on loopback: paged feeds, JSONL, CSV, retries."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from consistency.check import run_check
from consistency.errors import SourceUnavailable
from consistency.remote import HttpSource

Serve = Callable[[web.Application], Awaitable[TestServer]]
FAST = {"attempts": 3, "backoff": 0.01, "timeout": 2.0}


def jsonl(records: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def paged_app(records: list[dict[str, Any]], size: int, *, pretty: bool = False) -> web.Application:
    """A feed like the store's /v1/disclosures: pages of `size`, cursor = next offset."""

    async def handle(request: web.Request) -> web.Response:
        start = int(request.query.get("cursor", "0"))
        page = records[start:start + size]
        nxt = str(start + size) if start + size < len(records) else None
        return web.json_response({"records": page, "next": nxt},
                                 dumps=lambda v: json.dumps(v, indent=2 if pretty else None))

    app = web.Application()
    app.router.add_get("/v1/disclosures", handle)
    return app


def static_app(path: str, body: bytes, content_type: str, *, fail_first: int = 0,
               status: int = 503) -> web.Application:
    """Serves `body`, after answering `status` to the first `fail_first` requests."""
    calls = {"n": 0}

    async def handle(_: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] <= fail_first:
            return web.Response(status=status, text="busy")
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    app = web.Application()
    app["calls"] = calls
    app.router.add_get(path, handle)
    return app


async def test_paged_authority_and_jsonl_agency(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """A paged authority feed (cursor followed) against a JSONL agency body finds the change."""
    records = [f.record(n) for n in range(1, 8)]
    authority = await aiohttp_server(paged_app(records, 3))
    agency_records = [f.shown(r) for r in records]
    agency_records[5]["fine_amount"] = 9
    agency = await aiohttp_server(static_app("/agency.jsonl", jsonl(agency_records),
                                             "application/x-ndjson"))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("web", str(agency.make_url("/agency.jsonl")))], f.AS_OF, http=FAST)
    assert report.authority_records == 7
    result = report.agencies[0]
    assert result.records == 7
    assert [(x["class"], x["line"], x["record_id"]) for x in result.findings] == [
        ("content_mismatch", 6, "CF-000006")]


async def test_pretty_printed_paged_agency(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """A page written over several lines is still read as a page."""
    records = [f.record(n) for n in range(1, 4)]
    server = await aiohttp_server(paged_app([f.shown(r) for r in records], 2, pretty=True))
    authority = await aiohttp_server(paged_app(records, 50))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("pretty", str(server.make_url("/v1/disclosures")))], f.AS_OF,
                             http=FAST)
    assert report.agencies[0].records == 3 and report.agencies[0].findings == []


async def test_flaky_agency_succeeds_after_retry(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """Two 503 answers, then the body: the retries absorb them."""
    records = [f.record(1)]
    app = static_app("/a.jsonl", jsonl([f.shown(records[0])]), "application/x-ndjson",
                     fail_first=2)
    server = await aiohttp_server(app)
    authority = await aiohttp_server(paged_app(records, 10))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("flaky", str(server.make_url("/a.jsonl")))], f.AS_OF, http=FAST)
    assert app["calls"]["n"] == 3
    assert report.agencies[0].unavailable is None and report.agencies[0].records == 1


async def test_failing_agency_is_unavailable(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """An agency still failing after every retry is reported unavailable; others still run."""
    records = [f.record(1)]
    app = static_app("/a.jsonl", b"", "text/plain", fail_first=99)
    server = await aiohttp_server(app)
    good = await aiohttp_server(static_app("/g.jsonl", jsonl([f.shown(records[0])]),
                                           "application/x-ndjson"))
    authority = await aiohttp_server(paged_app(records, 10))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("down", str(server.make_url("/a.jsonl"))),
                              ("up", str(good.make_url("/g.jsonl")))], f.AS_OF, http=FAST)
    down, up = report.agencies
    assert app["calls"]["n"] == 3
    assert down.unavailable and "HTTP 503" in down.unavailable and "3 attempts" in down.unavailable
    assert up.unavailable is None and up.findings == []


async def test_not_found_is_not_retried(aiohttp_server: Serve) -> None:
    """A 404 is final: one request, then unavailable."""
    app = static_app("/elsewhere", b"", "text/plain")
    server = await aiohttp_server(app)
    source = HttpSource(str(server.make_url("/a.jsonl")), **FAST)
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        async for _ in source.batches():
            pass


async def test_refused_connection_is_unavailable() -> None:
    """Nothing listening: every attempt fails, then the source is unavailable."""
    source = HttpSource("http://127.0.0.1:9/a.jsonl", **FAST)
    with pytest.raises(SourceUnavailable, match="after 3 attempts"):
        async for _ in source.batches():
            pass


async def test_csv_over_http(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """A text/csv answer is read as a CSV export with the standard's headers."""
    record = f.record(1)
    body = ("统一社会信用代码,行政处罚决定书文号,罚款金额（元）\r\n"
            f"{record['uscc']},{record['decision_number']},15000\r\n").encode("gb18030")
    server = await aiohttp_server(static_app("/export", body, "text/csv"))
    authority = await aiohttp_server(paged_app([record], 10))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("csv", str(server.make_url("/export")))], f.AS_OF,
                             encoding="gb18030", http=FAST)
    assert report.agencies[0].records == 1 and report.agencies[0].findings == []


async def test_malformed_lines_in_a_jsonl_body(aiohttp_server: Serve, f: SimpleNamespace) -> None:
    """A bad line in a URL body is malformed with its line number; the rest is judged."""
    record = f.record(1)
    body = b"{broken\r\n\r\n" + jsonl([f.shown(record)])
    server = await aiohttp_server(static_app("/a.jsonl", body, "application/x-ndjson"))
    authority = await aiohttp_server(paged_app([record], 10))
    report = await run_check(str(authority.make_url("/v1/disclosures")),
                             [("a", str(server.make_url("/a.jsonl")))], f.AS_OF, http=FAST)
    assert [(x["class"], x["line"]) for x in report.agencies[0].findings] == [("malformed", 1)]
