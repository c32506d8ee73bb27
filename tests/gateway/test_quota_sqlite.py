"""Quotas on one gateway process over SQLite: exact under a concurrent burst, 429 with Retry-After
from the window, CST day and month windows, the rate, and refusals that consume nothing."""

from __future__ import annotations

import asyncio
import datetime as dt

from credcore.clock import CST, FixedClock
from tests.policies.support import audit_entry, licence

START = dt.datetime(2026, 1, 1, tzinfo=CST)


async def statuses(gateway, path: str, token: str, n: int, **kw) -> list[int]:
    responses = await asyncio.gather(*(gateway.get(path, token, **kw) for _ in range(n)))
    return sorted(resp.status for resp in responses)


async def test_burst_of_twice_the_quota_admits_exactly_the_quota(make_gateway, sample_code) -> None:
    """2×Q concurrent requests against a daily quota of Q: exactly Q answered 200, the rest 429."""
    clock = FixedClock(dt.datetime(2026, 11, 26, 22, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    quota = 20
    await gateway.add_client("burst", licence=licence(not_before=START, quotas={"per_day": quota}))
    token = await gateway.token("burst")
    responses = await asyncio.gather(*(gateway.get(f"/v1/entities/{sample_code}", token) for _ in range(2 * quota)))
    assert sorted(r.status for r in responses) == [200] * quota + [429] * quota
    refused = [r for r in responses if r.status == 429]
    assert {r.headers["Retry-After"] for r in refused} == {"7200"}  # 22:00 CST → next CST midnight
    body = await refused[0].json()
    assert body["error"] == "quota_exceeded" and "daily quota of 20" in body["error_description"]
    entry = await audit_entry(gateway, refused[0].headers["Audit-Entry"])
    assert entry["status"] == 429 and entry["error"] == "quota_exceeded" and entry["decision"] == "deny"


async def test_licence_refusals_consume_no_quota(make_gateway, sample_code) -> None:
    """Requests refused by the licence (data set, purpose) leave the whole quota for allowed ones."""
    gateway = await make_gateway(clock=FixedClock(dt.datetime(2026, 11, 26, 9, 0, tzinfo=CST)))
    await gateway.add_client("thrifty", licence=licence(not_before=START, datasets={"penalties": "*"},
                                                        quotas={"per_day": 3, "per_month": 3}))
    token = await gateway.token("thrifty")
    assert await statuses(gateway, f"/v1/entities/{sample_code}", token, 10) == [403] * 10
    assert await statuses(gateway, f"/v1/entities/{sample_code}/penalties", token, 5, purpose="marketing") == [403] * 5
    assert await statuses(gateway, f"/v1/entities/{sample_code}/penalties", token, 4) == [200] * 3 + [429]


async def test_day_window_resets_at_cst_midnight(make_gateway, sample_code) -> None:
    """A daily quota used up at 23:59:59 CST is fresh one second later (15:59:59 → 16:00:00 UTC)."""
    clock = FixedClock(dt.datetime(2026, 11, 26, 23, 59, 59, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("night", licence=licence(not_before=START, quotas={"per_day": 2}))
    path = f"/v1/entities/{sample_code}"
    assert await statuses(gateway, path, await gateway.token("night"), 3) == [200, 200, 429]
    resp = await gateway.get(path, await gateway.token("night"))
    assert resp.headers["Retry-After"] == "1"
    clock.advance(1)
    assert await statuses(gateway, path, await gateway.token("night"), 3) == [200, 200, 429]


async def test_month_window_31_january_into_february(make_gateway, sample_code) -> None:
    """A monthly quota used up on 31 January says retry at 1 February (CST) and is fresh then."""
    clock = FixedClock(dt.datetime(2027, 1, 31, 23, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("monthly", licence=licence(not_before=START, quotas={"per_month": 2}))
    path = f"/v1/entities/{sample_code}"
    token = await gateway.token("monthly")
    assert await statuses(gateway, path, token, 2) == [200, 200]
    resp = await gateway.get(path, token)
    assert resp.status == 429 and resp.headers["Retry-After"] == "3600"
    assert "monthly quota of 2" in (await resp.json())["error_description"]
    clock.set(dt.datetime(2027, 2, 1, 0, 0, tzinfo=CST))
    assert await statuses(gateway, path, await gateway.token("monthly"), 3) == [200, 200, 429]
    resp = await gateway.get(path, await gateway.token("monthly"))
    assert resp.headers["Retry-After"] == str(28 * 86400)  # February 2027 has 28 days


async def test_leap_day_is_its_own_window(make_gateway, sample_code) -> None:
    """28 February 2028 → 29 February → 1 March: three daily windows; Feb 2028 counts 29 days."""
    clock = FixedClock(dt.datetime(2028, 2, 28, 23, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("leap", licence=licence(not_before=dt.datetime(2027, 6, 1, tzinfo=CST),
                                                     quotas={"per_day": 1, "per_month": 100}))
    path = f"/v1/entities/{sample_code}"
    for day in (dt.datetime(2028, 2, 28, 23, 0, tzinfo=CST), dt.datetime(2028, 2, 29, 23, 0, tzinfo=CST),
                dt.datetime(2028, 3, 1, 23, 0, tzinfo=CST)):
        clock.set(day)
        token = await gateway.token("leap")
        assert (await gateway.get(path, token)).status == 200
        resp = await gateway.get(path, token)
        assert resp.status == 429 and resp.headers["Retry-After"] == "3600"


async def test_day_refusal_gives_the_month_unit_back(make_gateway, sample_code) -> None:
    """A request refused by the day window does not count against the month."""
    clock = FixedClock(dt.datetime(2026, 11, 2, 10, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("both", licence=licence(not_before=START, quotas={"per_day": 2, "per_month": 5}))
    path = f"/v1/entities/{sample_code}"
    assert await statuses(gateway, path, await gateway.token("both"), 4) == [200, 200, 429, 429]
    clock.advance(86400)
    assert await statuses(gateway, path, await gateway.token("both"), 4) == [200, 200, 429, 429]
    clock.advance(86400)
    token = await gateway.token("both")
    assert (await gateway.get(path, token)).status == 200
    resp = await gateway.get(path, token)
    assert resp.status == 429 and "monthly" in (await resp.json())["error_description"]
    backend = gateway.gw.licensing._counter.backend
    assert await backend.used("both-L1:m:2026-11") == 5


async def test_rate_refusal_says_when_a_token_refills(make_gateway, sample_code) -> None:
    """Past the burst, the rate answers 429 with Retry-After from its refill, and admits again after it."""
    clock = FixedClock(dt.datetime(2026, 11, 26, 9, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("slow", licence=licence(not_before=START, quotas={"rate_per_second": 0.5, "burst": 2}))
    path = f"/v1/entities/{sample_code}"
    token = await gateway.token("slow")
    assert [(await gateway.get(path, token)).status for _ in range(2)] == [200, 200]
    resp = await gateway.get(path, token)
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    assert "rate of 0.5 requests a second" in (await resp.json())["error_description"]
    clock.advance(2)
    assert (await gateway.get(path, token)).status == 200
