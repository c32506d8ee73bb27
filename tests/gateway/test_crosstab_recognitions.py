"""GET /v1/entities/{uscc}/recognitions: records received from partners, served as a licensed data set."""

from __future__ import annotations

from typing import Any

import pytest

from credcore.clock import FixedClock
from tests.conftest import OPERATOR_LICENCE
from tests.crosstab.partner_kit import HUAWEI, T0, GatewayKit, PartnerKit

SH, JS = "310000", "320000"
PATH = f"/v1/entities/{HUAWEI}/recognitions"


@pytest.fixture
async def received(make_gateway: Any) -> GatewayKit:
    """Shanghai's gateway after Jiangsu pushed two grades, a joint punishment and a revocation."""
    clock = FixedClock(T0)
    gw = GatewayKit(await make_gateway(clock=clock, crosstab={"enabled": True, "region": SH}))
    js = PartnerKit(JS, clock)
    client = await gw.register(js)
    records = [
        js.record(scheme="csj_enterprise_credit", grade="AA", valid_from="2025-01-01", valid_until="2025-12-31"),
        js.record(scheme="tax_credit", grade="B", valid_from="2025-04-01", valid_until="2026-03-31"),
        js.record(type="joint_punishment", scheme=None, grade=None, valid_until=None, list_name="严重失信主体名单",
                  decision_number="苏市监列〔2025〕7号", authority="江苏省市场监督管理局", valid_from="2025-06-01"),
        js.record(type="revocation", scheme=None, grade=None, valid_from=None, valid_until=None, revokes=f"{JS}-2"),
    ]
    resp, body = await gw.push(client, records)
    assert resp.status == 200 and len(body["accepted"]) == 4, body
    return gw


async def test_operator_sees_origin_grades_validity_and_revocation(received: GatewayKit) -> None:
    """A licensed operator sees each record's origin region, original and mapped grade, validity and revocation."""
    resp = await received.h.get(PATH, await received.h.token("op"))
    body = await resp.json()
    assert resp.status == 200, body
    assert "Audit-Entry" in resp.headers
    by_jti = {r["jti"]: r for r in body["records"]}
    assert set(by_jti) == {f"{JS}-1", f"{JS}-2", f"{JS}-3"}  # the revocation shows on its target
    regional = by_jti[f"{JS}-1"]
    assert (regional["origin_region"], regional["scheme"], regional["grade"]) == (JS, "csj_enterprise_credit", "AA")
    assert (regional["mapped_scheme"], regional["mapped_grade"]) == ("public_credit", "A")
    assert (regional["valid_from"], regional["valid_until"], regional["revoked"]) == ("2025-01-01", "2025-12-31", False)
    assert (by_jti[f"{JS}-2"]["grade"], by_jti[f"{JS}-2"]["mapped_grade"], by_jti[f"{JS}-2"]["revoked"]) == (
        "B", "B", True)
    listed = by_jti[f"{JS}-3"]
    assert (listed["type"], listed["list_name"]) == ("joint_punishment", "严重失信主体名单")
    assert listed["mapped_grade"] is None
    entry = await received.entry(resp.headers["Audit-Entry"])
    assert (entry["dataset"], entry["uscc"], entry["decision"]) == ("recognitions", [HUAWEI], "allow")
    assert sorted(r["id"] for r in entry["records"]) == sorted(by_jti)


async def test_licence_field_list_applies_to_recognitions(received: GatewayKit) -> None:
    """An operator licensed for some fields of the data set gets only those."""
    fields = ["jti", "origin_region", "grade", "mapped_grade", "revoked"]
    await received.h.add_client("narrow", licence={**OPERATOR_LICENCE, "datasets": {"recognitions": fields}})
    resp = await received.h.get(PATH, await received.h.token("narrow"))
    body = await resp.json()
    assert resp.status == 200 and body["records"]
    assert all(set(r) == set(fields) for r in body["records"])


async def test_operator_without_the_data_set_is_refused(received: GatewayKit) -> None:
    """A licence that does not name recognitions is a 403, audited like any refusal."""
    await received.h.add_client("penalties-only", licence={**OPERATOR_LICENCE, "datasets": {"penalties": "*"}})
    resp = await received.h.get(PATH, await received.h.token("penalties-only"))
    assert (resp.status, (await resp.json())["error"]) == (403, "insufficient_scope")
    assert (await received.entry(resp.headers["Audit-Entry"]))["decision"] == "deny"


async def test_company_with_no_recognitions_and_bad_codes(received: GatewayKit) -> None:
    """No record is an empty list; a malformed code is 400 invalid_uscc."""
    token = await received.h.token("op")
    resp = await received.h.get("/v1/entities/91110108551385082Q/recognitions", token)
    assert (resp.status, (await resp.json())["records"]) == (200, [])
    resp = await received.h.get("/v1/entities/91110108551385082X/recognitions", token)
    assert (resp.status, (await resp.json())["error"]) == (400, "invalid_uscc")
