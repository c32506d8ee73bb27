"""Licences enforced on /v1: data sets, purposes, regions, fields, page sizes and validity, with
what the audit entry says about each decision."""

from __future__ import annotations

import datetime as dt

from credcore.clock import CST, FixedClock
from tests.conftest import wait_for
from tests.policies.support import audit_entry, licence

PENALTY_FIELDS = ["uscc", "decision_number", "fine_amount"]


def other_province(code: str) -> str:
    return "650000" if code[2:4] != "65" else "110000"


async def test_allowed_request_audits_the_matched_rule(gateway, sample_code) -> None:
    """An allowed request's audit entry carries the matching Casbin rule (enforce_ex) and its licence."""
    await gateway.add_client("sh", licence=licence(datasets={"penalties": "*"}, regions=[sample_code[2:4] + "0000"]))
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", await gateway.token("sh"))
    assert resp.status == 200
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["decision"] == "allow"
    assert entry["licence"] == "sh-L1"
    assert entry["rule"] == ["sh", "penalties", "credit_check", sample_code[2:4], "sh-L1"]
    assert entry["reason"] == "licence sh-L1"


async def test_data_set_outside_the_licence_is_refused(gateway, sample_code) -> None:
    """A data set the licence does not name is a 403 insufficient_scope naming it, audited as a denial."""
    await gateway.add_client("pen", licence=licence(datasets={"penalties": "*"}))
    resp = await gateway.get(f"/v1/entities/{sample_code}/licences", await gateway.token("pen"))
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope"
    assert "'licences'" in body["error_description"]
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["decision"] == "deny" and entry["rule"] is None and entry["licence"] is None
    assert "'licences' is outside" in entry["reason"]
    assert entry["fields"] == [] and entry["body_sha256"] is not None


async def test_unlicensed_or_missing_purpose_is_refused(gateway, sample_code) -> None:
    """A purpose the licence does not grant, or none at all, is a 403 naming the purpose."""
    await gateway.add_client("pur", licence=licence(purposes=["credit_check"]))
    token = await gateway.token("pur")
    resp = await gateway.get(f"/v1/entities/{sample_code}", token, purpose="marketing")
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope"
    assert "'marketing'" in body["error_description"]
    resp = await gateway.get(f"/v1/entities/{sample_code}", token, purpose=None)
    body = await resp.json()
    assert resp.status == 403 and "X-Purpose" in body["error_description"]
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["request"]["purpose"] is None and entry["decision"] == "deny"


async def test_default_purpose_is_used_and_audited_as_undeclared(gateway, sample_code) -> None:
    """A licence with a default purpose admits a request without X-Purpose and the audit says so."""
    await gateway.add_client("dp", licence=licence(default_purpose="credit_check"))
    resp = await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("dp"), purpose=None)
    assert resp.status == 200
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["request"]["purpose"] == "credit_check" and entry["request"]["purpose_declared"] is False


async def test_region_outside_the_licence_is_refused(gateway, sample_code) -> None:
    """A subject registered outside the licensed divisions (positions 3-8 of its code) is refused."""
    await gateway.add_client("far", licence=licence(regions=[other_province(sample_code)]))
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", await gateway.token("far"))
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope"
    assert sample_code[2:8] in body["error_description"]
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["uscc"] == [sample_code] and entry["decision"] == "deny"


async def test_bulk_pages_keep_only_licensed_regions(gateway) -> None:
    """On a paged list, records of subjects outside the licensed regions are dropped."""
    await gateway.add_client("gd", licence=licence(regions=["440000"]))
    resp = await gateway.get("/v1/lists/serious-untrustworthy?limit=1000", await gateway.token("gd"))
    body = await resp.json()
    assert resp.status == 200
    assert body["records"], body
    assert all(record["uscc"][2:4] == "44" for record in body["records"])


async def test_fields_outside_the_licence_are_stripped_and_listed(gateway, sample_code) -> None:
    """Only licensed fields leave; the audit entry lists the fields released and those stripped."""
    await gateway.add_client("few", licence=licence(datasets={"penalties": PENALTY_FIELDS}))
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", await gateway.token("few"))
    body = await resp.json()
    assert resp.status == 200 and body["records"]
    for record in body["records"]:
        assert set(record) <= set(PENALTY_FIELDS)
    entry = await audit_entry(gateway, resp.headers["Audit-Entry"])
    assert entry["fields"] == sorted(PENALTY_FIELDS)
    assert {"violation_facts", "legal_representative", "legal_representative_id_number"} <= set(entry["stripped"])
    assert not set(entry["fields"]) & set(entry["stripped"])


async def test_page_size_is_capped_by_the_licence(gateway) -> None:
    """A bulk request asking for more than the licence's page size gets at most that many records."""
    await gateway.add_client("page", licence=licence(quotas={"page_size_max": 3}))
    resp = await gateway.get("/v1/disclosures?limit=1000", await gateway.token("page"))
    body = await resp.json()
    assert resp.status == 200
    assert 0 < len(body["records"]) <= 3


async def test_licence_ends_exactly_at_not_after(make_gateway, sample_code) -> None:
    """A licence stops at not_after by the injected clock, with no change in the database."""
    clock = FixedClock(dt.datetime(2026, 11, 26, 9, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    start = clock.now() - dt.timedelta(days=1)
    end = clock.now() + dt.timedelta(minutes=10)
    await gateway.add_client("short", licence=licence(not_before=start, not_after=end))
    resp = await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("short"))
    assert resp.status == 200
    clock.advance(600)
    resp = await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("short"))
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope"


async def test_licence_starts_at_not_before(make_gateway, sample_code) -> None:
    """A licence that starts later grants nothing before not_before and everything after, unchanged in the database."""
    clock = FixedClock(dt.datetime(2026, 11, 26, 9, 0, tzinfo=CST))
    gateway = await make_gateway(clock=clock)
    await gateway.add_client("later", licence=licence(not_before=clock.now() + dt.timedelta(hours=1)))
    resp = await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("later"))
    assert resp.status == 403
    clock.advance(3600)
    token = await gateway.token("later")

    async def allowed() -> bool:
        return (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 200

    assert await wait_for(allowed, timeout=1.0)
