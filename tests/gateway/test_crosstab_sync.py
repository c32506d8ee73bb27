"""Sync over real HTTP: two in-process gateways both ways, and partners that answer slowly or with garbage."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from credcore.clock import FixedClock
from crosstab.exchange import RetryPolicy
from crosstab.outbox import evaluation
from crosstab.partner_http import Timeouts
from crosstab.runtime import CrosstabRuntime
from gateway.crosstab_api import CROSSTAB
from tests.conftest import ServeApp
from tests.crosstab.partner_kit import T0, GatewayKit, PartnerKit, uscc

SH, JS = "310000", "320000"


class Sleeps:
    """An injected sleep that records the pauses instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def rt(gw: GatewayKit) -> CrosstabRuntime:
    return gw.h.app[CROSSTAB]


async def issue(gw: GatewayKit, n: int) -> list[str]:
    """Issue n tax-grade evaluations about companies of the gateway's region."""
    region = rt(gw).region
    out = []
    for i in range(n):
        draft = evaluation(uscc(f"91{region.code}MA1K{i:05d}"), "tax_credit", "A", dt.date(2025, 4, 1),
                           dt.date(2026, 3, 31))
        out.append((await region.issue(draft)).jti)
    return out


@pytest.fixture
async def two(make_gateway: Any, tmp_path: Any) -> tuple[GatewayKit, GatewayKit]:
    """Shanghai and Jiangsu gateways on their own databases, each registered and linked at the other."""
    clock = FixedClock(T0)
    kits = []
    for code in (SH, JS):
        harness = await make_gateway(clock=clock, db_url=f"sqlite:///{tmp_path / code}.db",
                                     crosstab={"enabled": True, "region": code, "domestic_regions": "310000,320000"})
        kits.append(GatewayKit(harness))
    sh, js = kits
    issued = []
    for ours, theirs in ((sh, js), (js, sh)):
        jwks = await (await theirs.h.client.get("/crosstab/v1/jwks.json")).json()
        status, creds = await ours.register_raw(
            {"region": rt(theirs).code, "name": f"Region {rt(theirs).code}", "jwks": jwks,
             "record_types": ["evaluation", "revocation"], "domestic": True}
        )
        assert status == 201, creds
        issued.append((ours, theirs, creds))
    for ours, theirs, creds in issued:
        url = str(ours.h.client.make_url("")).rstrip("/")
        await rt(theirs).link_partner(rt(ours).code, url, creds["client_id"], creds["client_secret"], actor="test")
    return sh, js


async def test_sync_pulls_and_pushes_both_ways_without_duplicates(two: tuple[GatewayKit, GatewayKit]) -> None:
    """Shanghai's sync pulls Jiangsu's outbox and pushes its own; again, it moves nothing and stores nothing twice."""
    sh, js = two
    sh_jtis, js_jtis = await issue(sh, 3), await issue(js, 4)
    outcomes = await rt(sh).sync(pull=True, push=True, limit=2)
    assert [(o.partner, o.direction, o.error) for o in outcomes] == [(JS, "pull", None), (JS, "push", None)]
    pulled, pushed = outcomes[0].report, outcomes[1].report
    assert pulled is not None and pushed is not None
    assert (pulled.accepted, pulled.cursor_after, pushed.accepted, pushed.cursor_after) == (js_jtis, 4, sh_jtis, 3)
    assert [r.origin_region for r in await rt(sh).region.recognitions(uscc(f"91{JS}MA1K00000"))] == [JS]
    assert [r.origin_region for r in await rt(js).region.recognitions(uscc(f"91{SH}MA1K00000"))] == [SH]
    again = await rt(sh).sync(pull=True, push=True)
    assert [(o.report.accepted, o.report.pages) for o in again if o.report] == [([], 0), ([], 0)]
    # Jiangsu pulling what Shanghai already pushed: accepted again, stored once.
    [back] = await rt(js).sync(pull=True)
    assert back.report is not None and back.report.accepted == sh_jtis
    assert len(await rt(js).region.recognitions(uscc(f"91{SH}MA1K00001"))) == 1


async def test_every_sync_page_is_audited_on_both_sides(two: tuple[GatewayKit, GatewayKit]) -> None:
    """Our entries say sync_pull/sync_push per page; the partner's say pull/push by our client."""
    sh, js = two
    await issue(sh, 1)
    await issue(js, 1)
    await rt(sh).sync(pull=True, push=True)
    reader = await sh.bearer("auditor")
    ours = await (await sh.h.client.get(f"/audit/search?uscc={uscc(f'91{JS}MA1K00000')}", headers=reader)).json()
    kinds = [(e["entry"]["exchange"], e["entry"]["direction"]) for e in ours["entries"]]
    assert kinds == [("sync_pull", "in")]
    theirs = await (await js.h.client.get(f"/audit/search?uscc={uscc(f'91{SH}MA1K00000')}",
                                          headers=await js.bearer("auditor"))).json()
    assert [(e["entry"]["exchange"], e["entry"]["partner"]) for e in theirs["entries"]] == [("push", SH)]


@pytest.fixture
def fake_partner(serve_app: ServeApp) -> Callable[..., Any]:
    """start(outbox_handler) -> base URL of a partner gateway whose outbox does what the test says."""
    async def start(outbox: Callable[[web.Request], Any]) -> str:
        async def token(_request: web.Request) -> web.Response:
            return web.json_response({"access_token": "t", "token_type": "Bearer", "expires_in": 300})

        app = web.Application()
        app.router.add_post("/oauth/token", token)
        app.router.add_get("/crosstab/v1/outbox", outbox)
        return await serve_app(app)

    return start


async def _linked(make_gateway: Any, url: str) -> GatewayKit:
    clock = FixedClock(T0)
    gw = GatewayKit(await make_gateway(clock=clock, crosstab={"enabled": True, "region": SH}))
    await gw.register(PartnerKit(JS, clock))
    await rt(gw).link_partner(JS, url, "us-at-js", "secret", actor="test")
    return gw


async def _slow(_request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({"records": [], "next": 0})


async def _html(_request: web.Request) -> web.Response:
    return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")


async def _huge(_request: web.Request) -> web.Response:
    return web.json_response({"records": ["x" * 1_000_000] * 3, "next": 3})


async def _error(_request: web.Request) -> web.Response:
    return web.json_response({"error": "internal_error"}, status=500)


async def _bad_shape(_request: web.Request) -> web.Response:
    return web.json_response({"records": "everything", "next": 1})


@pytest.mark.parametrize("outbox", [_slow, _html, _huge, _error, _bad_shape],
                         ids=["slow", "html", "huge", "500", "bad-shape"])
async def test_partner_slow_or_garbage_fails_the_sync_and_keeps_the_cursor(
    make_gateway: Any, fake_partner: Callable[..., Any], outbox: Any
) -> None:
    """After the retries with backoff, the sync fails, the cursor stays at 0 and the failure is audited."""
    gw = await _linked(make_gateway, await fake_partner(outbox))
    sleeps = Sleeps()
    retry = RetryPolicy(attempts=3, base_delay=0.5, factor=2, sleep=sleeps)
    [outcome] = await rt(gw).sync(timeouts=Timeouts(connect=1, read=0.3, total=1), retry=retry, limit=1)
    assert outcome.error is not None and outcome.direction == "pull"
    assert sleeps.delays == [0.5, 1.0]
    assert await rt(gw).region.store.get_cursor(JS, "pull") == 0
    reader = await gw.bearer("auditor")
    found = await (await gw.h.client.get("/audit/search?decision=error", headers=reader)).json()
    [entry] = [e["entry"] for e in found["entries"] if e["entry"]["kind"] == "crosstab"]
    assert (entry["exchange"], entry["partner"], entry["status"]) == ("sync_pull", JS, 502)


async def test_transient_partner_failure_is_retried(make_gateway: Any, fake_partner: Callable[..., Any]) -> None:
    """A partner failing once and then answering well completes the sync after one pause."""
    calls: list[str] = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(request.query["after"])
        if len(calls) == 1:
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"records": [], "next": 0})

    gw = await _linked(make_gateway, await fake_partner(flaky))
    sleeps = Sleeps()
    [outcome] = await rt(gw).sync(retry=RetryPolicy(attempts=3, base_delay=0.5, sleep=sleeps))
    assert (outcome.error, sleeps.delays, calls) == (None, [0.5], ["0", "0"])
