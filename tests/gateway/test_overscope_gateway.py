"""Over-scope detection in a running gateway: past a threshold the operator is suspended through
the admin suspension (audited, tokens revoked) with an incident record saying why."""

from __future__ import annotations

import datetime as dt

from credcore.clock import CST, FixedClock
from tests.conftest import wait_for
from tests.gateway.test_overscope_detector import code
from tests.policies.support import admin_call, audit_entry, licence

NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=CST)


async def suspended(gateway, token: str, path: str) -> bool:
    resp = await gateway.get(path, token)
    return resp.status == 403 and (await resp.json())["error"] == "operator_suspended"


async def incidents(gateway, query: str = "") -> list[dict]:
    """The incidents, once the suspension under way has recorded its own (it is written last)."""
    found: list[dict] = []

    async def recorded() -> bool:
        _, body = await admin_call(gateway, "GET", f"/admin/incidents{query}")
        found[:] = body["incidents"]
        return bool(found)

    assert await wait_for(recorded, timeout=2.0)
    return found


async def test_repeated_scope_violations_suspend_with_an_incident(make_gateway, sample_code) -> None:
    """The fourth out-of-licence request within the window suspends the operator, audited, with an incident."""
    gateway = await make_gateway(clock=FixedClock(NOW), overscope={"max_scope_denials": 3})
    await gateway.add_client("nosy", licence=licence(datasets={"penalties": "*"}))
    token = await gateway.token("nosy")
    for _ in range(4):
        assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
    assert await wait_for(lambda: suspended(gateway, token, f"/v1/entities/{sample_code}/penalties"), timeout=1.0)

    found = await incidents(gateway, "?client_id=nosy")
    assert len(found) == 1
    incident = found[0]
    assert incident["kind"] == "scope_violations" and incident["action"] == "suspended"
    assert incident["reason"].startswith("automatic suspension: 4 requests outside its licence")
    assert "within 60 s (threshold 3)" in incident["reason"]
    entry = await audit_entry(gateway, incident["audit_index"])
    assert entry["kind"] == "admin" and entry["action"] == "suspend" and entry["target"] == "nosy"
    assert entry["client_id"] == "credgate-overscope" and entry["details"]["incident"] == "scope_violations"
    status, view = await admin_call(gateway, "GET", "/admin/operators/nosy")
    assert view["status"] == "suspended" and view["reason"] == incident["reason"]

    status, _ = await admin_call(gateway, "POST", "/admin/operators/nosy/resume", {"reason": "reviewed"})
    assert status == 200
    assert (await gateway.get(f"/v1/entities/{sample_code}/penalties", token)).status == 401  # tokens were revoked


async def test_not_found_enumeration_suspends(make_gateway) -> None:
    """Lookups of many unknown (well-formed) codes suspend the operator as enumeration."""
    gateway = await make_gateway(clock=FixedClock(NOW), overscope={"max_not_found": 5})
    await gateway.add_client("enum", licence=licence())
    token = await gateway.token("enum")
    for n in range(6):
        assert (await gateway.get(f"/v1/entities/{code('91310115', 10_000 * n + 17)}", token)).status == 404
    assert await wait_for(lambda: suspended(gateway, token, f"/v1/entities/{code('91310115', 5)}"), timeout=1.0)
    assert [i["kind"] for i in await incidents(gateway)] == ["enumeration_not_found"]


async def test_sequential_enumeration_suspends(make_gateway) -> None:
    """Codes looked up one after another (consecutive organization codes) suspend the operator."""
    gateway = await make_gateway(clock=FixedClock(NOW), overscope={"max_sequential": 3})
    await gateway.add_client("seq", licence=licence())
    token = await gateway.token("seq")
    for n in range(5):
        await gateway.get(f"/v1/entities/{code('91440300', 31337 + n)}", token)
    assert await wait_for(lambda: suspended(gateway, token, f"/v1/entities/{code('91440300', 1)}"), timeout=1.0)
    assert (await incidents(gateway, "?client_id=seq"))[0]["kind"] == "enumeration_sequential"


async def test_distinct_codes_suspend(make_gateway, dataset) -> None:
    """Many distinct existing codes within the window suspend the operator."""
    gateway = await make_gateway(clock=FixedClock(NOW), overscope={"max_distinct_codes": 5})
    await gateway.add_client("wide", licence=licence())
    token = await gateway.token("wide")
    codes = [entity["uscc"] for entity in dataset.entities[:6]]
    for c in codes:
        await gateway.get(f"/v1/entities/{c}", token)
    assert await wait_for(lambda: suspended(gateway, token, f"/v1/entities/{codes[0]}"), timeout=1.0)
    assert (await incidents(gateway))[0]["kind"] == "enumeration_distinct_codes"


async def test_violations_spread_out_in_time_do_not_suspend(make_gateway, sample_code) -> None:
    """Denials further apart than the window never add up (injected clock)."""
    clock = FixedClock(NOW)
    gateway = await make_gateway(clock=clock, overscope={"max_scope_denials": 3, "window": 60})
    await gateway.add_client("slow", licence=licence(datasets={"penalties": "*"}))
    for _ in range(4):
        token = await gateway.token("slow")
        for _ in range(3):
            assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
        clock.advance(61)
    token = await gateway.token("slow")
    assert (await gateway.get(f"/v1/entities/{sample_code}/penalties", token)).status == 200
    _, body = await admin_call(gateway, "GET", "/admin/incidents")
    assert body["incidents"] == []


async def test_detection_can_be_switched_off(make_gateway, sample_code) -> None:
    """With overscope.enabled = false nothing is suspended automatically."""
    gateway = await make_gateway(overscope={"enabled": False, "max_scope_denials": 1})
    await gateway.add_client("free", licence=licence(datasets={"penalties": "*"}))
    token = await gateway.token("free")
    for _ in range(5):
        assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
    assert (await gateway.get(f"/v1/entities/{sample_code}/penalties", token)).status == 200
