"""The exchange endpoints over HTTP on one gateway: partners, inbox, outbox, JWKS, audit."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from audit import tables as audit_tables
from credcore.clock import FixedClock
from crosstab.outbox import Draft, evaluation
from crosstab.records import MAX_RECORD_BYTES, TYP, verify_record
from gateway.crosstab_api import CROSSTAB
from tests.crosstab.partner_kit import HUAWEI, T0, GatewayKit, PartnerKit, uscc

SH, JS, HK, ZJ = "310000", "320000", "810000", "330000"
DOMESTIC = "310000,320000,330000"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
async def gw(make_gateway: Any, clock: FixedClock) -> GatewayKit:
    harness = await make_gateway(
        clock=clock, crosstab={"enabled": True, "region": SH, "domestic_regions": DOMESTIC, "max_batch": 20}
    )
    return GatewayKit(harness)


@pytest.fixture
def js(clock: FixedClock) -> PartnerKit:
    return PartnerKit(JS, clock)


async def _size(gw: GatewayKit) -> int:
    """How many entries the audit log holds."""
    async with gw.h.gw.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(audit_tables.entries)) or 0)


# --- POST /admin/partners ---------------------------------------------------------------


async def test_register_partner_answers_its_client_and_is_audited(gw: GatewayKit, js: PartnerKit) -> None:
    """A registration answers 201 with a client that gets both crosstab scopes; the admin entry names it."""
    client_id = await gw.register(js)
    resp = await gw.h.client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                        "client_secret": gw.h.secrets[client_id]})
    assert set((await resp.json())["scope"].split()) == {"crosstab:push", "crosstab:pull"}
    [partner] = await gw.h.app[CROSSTAB].partners()
    assert (partner["region"], partner["client_id"], partner["domestic"]) == (JS, client_id, False)
    entry = await gw.entry(await _size(gw) - 1)
    assert (entry["kind"], entry["details"]["client_id"], entry["target"]) == ("admin", client_id, JS)


def _bad_registrations(js: PartnerKit) -> list[tuple[Any, str]]:
    good = {"region": JS, "name": "Jiangsu", "jwks": js.jwks(), "record_types": ["evaluation"]}
    private = {"keys": [{**js.keys[js.kid].as_dict(private=True), "kid": js.kid}]}
    ec = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": "AAAA", "y": "AAAA"}]}
    return [
        (b"{not json", "invalid_request"),
        ({**good, "region": "31000"}, "region"),
        ({**good, "region": SH}, "own region"),
        ({k: v for k, v in good.items() if k != "name"}, "name"),
        ({**good, "jwks": private}, "private"),
        ({**good, "jwks": ec}, "jwks"),
        ({**good, "jwks": {"keys": []}}, "jwks"),
        ({**good, "record_types": ["gossip"]}, "record_types"),
        ({**good, "record_types": []}, "record_types"),
        ({**good, "domestic": "yes"}, "domestic"),
        ({**good, "extra": 1}, "extra"),
    ]


async def test_bad_registration_is_a_clear_400_and_changes_nothing(gw: GatewayKit, js: PartnerKit) -> None:
    """Each malformed registration is refused with a description naming the problem; nothing is created."""
    before = await _size(gw)
    for body, words in _bad_registrations(js):
        status, answer = await gw.register_raw(body)
        assert status == 400, (body, answer)
        assert answer["error"] == "invalid_request"
        assert words in answer["error_description"] or words == "invalid_request", answer
    assert await gw.h.app[CROSSTAB].partners() == []
    assert await _size(gw) == before  # refused before anything was audited or written


async def test_registration_needs_the_admin_scope(gw: GatewayKit, js: PartnerKit) -> None:
    """No token is 401; an operator's token is 403."""
    body = {"region": JS, "name": "Jiangsu", "jwks": js.jwks(), "record_types": ["evaluation"]}
    resp = await gw.h.client.post("/admin/partners", json=body)
    assert resp.status == 401
    resp = await gw.h.client.post("/admin/partners", json=body, headers=await gw.bearer("op"))
    assert (resp.status, (await resp.json())["error"]) == (403, "insufficient_scope")


async def test_crosstab_disabled_answers_404(make_gateway: Any, js: PartnerKit) -> None:
    """A gateway without [crosstab] enabled has no exchange: 404, still audited for the inbox."""
    kit = GatewayKit(await make_gateway())
    assert (await kit.h.client.get("/crosstab/v1/jwks.json")).status == 404
    status, _ = await kit.register_raw({"region": JS})
    assert status == 404
    resp, body = await kit.push(None, [])
    assert (resp.status, body["error"]) == (404, "not_found")
    assert (await kit.entry(resp.headers["Audit-Entry"]))["kind"] == "crosstab"


# --- POST /crosstab/v1/inbox -------------------------------------------------------------


async def test_push_accepts_records_and_audits_the_exchange(gw: GatewayKit, js: PartnerKit) -> None:
    """Accepted records are answered by jti; the entry names partner, direction, jtis and subjects."""
    client_id = await gw.register(js)
    xiaomi = "91110108551385082Q"
    records = [js.record(), js.record(sub=xiaomi, scheme="csj_enterprise_credit", grade="AA", valid_until="2025-12-31")]
    resp, body = await gw.push(client_id, records)
    assert (resp.status, body) == (200, {"accepted": [f"{JS}-1", f"{JS}-2"], "rejected": []})
    entry = await gw.entry(resp.headers["Audit-Entry"])
    assert entry["kind"] == "crosstab" and entry["client_id"] == client_id
    assert (entry["partner"], entry["direction"], entry["exchange"]) == (JS, "in", "push")
    assert (entry["accepted"], entry["decision"]) == ([f"{JS}-1", f"{JS}-2"], "allow")
    assert entry["uscc"] == sorted([HUAWEI, xiaomi])
    search = await gw.h.client.get(f"/audit/search?uscc={xiaomi}", headers=await gw.bearer("auditor"))
    assert int(resp.headers["Audit-Entry"]) in [e["index"] for e in (await search.json())["entries"]]


def _bad_batch(js: PartnerKit, clock: FixedClock) -> list[tuple[str | Any, str]]:
    """(record, expected code) for each bad input of the issue; js has sent seq 1 before."""
    stranger = PartnerKit(ZJ, clock)
    good = js.record()  # seq 2: accepted first, so a later lower seq is stale
    header = {"alg": "EdDSA", "kid": js.kid, "typ": TYP}
    oversized = js.raw(header, json.dumps(js.payload(subject_name="x" * MAX_RECORD_BYTES)).encode())
    replay = js.payload(grade="B")
    replay["jti"] = f"{JS}-1"
    stale = js.payload()
    stale["seq"] = 1
    stale["jti"] = f"{JS}-stale"
    forged = js.payload()
    return [
        (good, "accepted"),
        ("garbage", "invalid_record"),
        (good[: len(good) // 2], "invalid_record"),  # truncated
        (oversized, "invalid_record"),
        (17, "invalid_record"),
        (js.raw(header, b"[" * 9000), "invalid_record"),  # nested too deeply for a JSON parser
        (stranger.record(), "wrong_issuer"),  # iss 330000, not the sender
        (js.sign(js.payload(iss=ZJ)), "wrong_issuer"),  # a valid signature claiming another region
        (js.record(type="joint_reward", scheme=None, grade=None, valid_until=None, list_name="守信激励",
                   decision_number="苏信〔2025〕1号"), "wrong_issuer"),  # a type not allowed for it
        (stranger.sign(js.payload(), stranger.kid), "unknown_key"),
        (stranger.raw({**header, "kid": js.kid}, json.dumps(forged).encode()), "bad_signature"),
        (js.record(valid_from="2024-01-01", valid_until="2024-12-31"), "expired"),
        (js.sign(replay), "replay"),
        (js.sign(stale), "stale_seq"),
        (js.record(scheme="made_up_scheme"), "unmapped_grade"),
        (js.record(grade="Z"), "unmapped_grade"),
    ]


async def test_each_bad_record_is_rejected_with_its_code_and_others_accepted(
    gw: GatewayKit, js: PartnerKit, clock: FixedClock
) -> None:
    """One batch with every bad input: each gets the contract's code, the good one goes through, all audited."""
    client_id = await gw.register(js, types=("evaluation", "revocation"))
    resp, _ = await gw.push(client_id, [js.record()])
    assert resp.status == 200
    cases = _bad_batch(js, clock)
    resp, body = await gw.push(client_id, [record for record, _ in cases])
    assert resp.status == 200
    assert body["accepted"] == [f"{JS}-2"]
    codes = {r["index"]: r["error"] for r in body["rejected"]}
    assert [codes.get(i, "accepted") for i in range(len(cases))] == [code for _, code in cases]
    entry = await gw.entry(resp.headers["Audit-Entry"])
    assert [(r["index"], r["error"]) for r in entry["rejected"]] == sorted(codes.items())
    assert entry["uscc"] == [HUAWEI]


async def test_resending_a_batch_is_harmless(gw: GatewayKit, js: PartnerKit) -> None:
    """The same records again are accepted once more and stored once."""
    client_id = await gw.register(js)
    records = [js.record(), js.record(sub=uscc("91320000MA1K00001"))]
    first = (await gw.push(client_id, records))[1]
    again = (await gw.push(client_id, records))[1]
    assert first == again == {"accepted": [f"{JS}-1", f"{JS}-2"], "rejected": []}
    assert len(await gw.h.app[CROSSTAB].region.recognitions(HUAWEI)) == 1


async def test_batch_over_the_limit_is_a_clear_413(gw: GatewayKit, js: PartnerKit) -> None:
    """21 records where 20 are allowed: 413 saying so, nothing stored, the refusal audited."""
    client_id = await gw.register(js)
    resp, body = await gw.push(client_id, [js.record(sub=uscc(f"91320000MA1K{i:05d}")) for i in range(21)])
    assert (resp.status, body["error"]) == (413, "request_too_large")
    assert "at most 20 records" in body["error_description"] and "21" in body["error_description"]
    assert await gw.h.app[CROSSTAB].region.store.inbox_state(JS, []) == (await _empty_state())
    entry = await gw.entry(resp.headers["Audit-Entry"])
    assert (entry["status"], entry["decision"], entry["partner"]) == (413, "deny", JS)


async def _empty_state() -> Any:
    from crosstab.inbox import InboxState

    return InboxState()


async def test_body_over_the_size_limit_is_413_and_audited(make_gateway: Any, clock: FixedClock,
                                                           js: PartnerKit) -> None:
    """A body over server.max_body_bytes is refused before the handler and still audited."""
    kit = GatewayKit(await make_gateway(clock=clock, server={"max_body_bytes": 4096},
                                        crosstab={"enabled": True, "region": SH}))
    client_id = await kit.register(js)
    resp, body = await kit.push(client_id, [js.record() for _ in range(10)])
    assert (resp.status, body["error"]) == (413, "request_too_large")
    entry = await kit.entry(resp.headers["Audit-Entry"])
    assert (entry["kind"], entry["status"], entry["exchange"]) == ("crosstab", 413, "push")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"not json", "application/json"),
        (b"[]", "application/json"),
        (b'{"records": "jws"}', "application/json"),
        (b'{"records": [], "records": ["x"]}', "application/json"),
        (b'{"records": [], "more": 1}', "application/json"),
        (b'{"records": []}', "text/plain"),
    ],
    ids=["not-json", "array", "records-str", "duplicate-member", "extra-member", "content-type"],
)
async def test_malformed_batch_is_400(gw: GatewayKit, js: PartnerKit, data: bytes, content_type: str) -> None:
    """A body that is not exactly {"records": [...]} as JSON is a 400 for the whole batch, audited."""
    client_id = await gw.register(js)
    resp, body = await gw.push(client_id, None, data=data, headers={"Content-Type": content_type})
    assert (resp.status, body["error"]) == (400, "invalid_request")
    assert (await gw.entry(resp.headers["Audit-Entry"]))["status"] == 400


async def test_inbox_refuses_callers_that_are_not_partners(gw: GatewayKit, js: PartnerKit) -> None:
    """No token 401; an operator 403; a pull-only token 403; a crosstab client of no partner 403; all audited."""
    client_id = await gw.register(js)
    await gw.h.add_client("lookalike", scope="crosstab:push crosstab:pull")
    pull_only = {"Authorization": f"Bearer {await gw.h.token(client_id, 'crosstab:pull')}"}
    answers = [
        await gw.push(None, [js.record()]),
        await gw.push("op", [js.record()]),
        await gw.push(None, [js.record()], headers=pull_only),
        await gw.push("lookalike", [js.record()]),
    ]
    assert [(r.status, b["error"]) for r, b in answers] == [
        (401, "invalid_token"), (403, "insufficient_scope"), (403, "insufficient_scope"), (403, "insufficient_scope")
    ]
    assert answers[0][0].headers["WWW-Authenticate"].startswith("Bearer")
    assert "not the client of a registered partner" in answers[3][1]["error_description"]
    for resp, _ in answers:
        entry = await gw.entry(resp.headers["Audit-Entry"])
        assert (entry["kind"], entry["decision"], entry["status"]) == ("crosstab", "deny", resp.status)
    assert await gw.h.app[CROSSTAB].region.recognitions(HUAWEI) == []


async def test_key_rotation_in_the_middle_of_a_stream(gw: GatewayKit, js: PartnerKit, clock: FixedClock) -> None:
    """Re-registering with a new key retires the old one: older records still verify, newer ones do not."""
    first = await gw.register(js)
    old_token = await gw.bearer(first)
    assert (await gw.push(None, [js.record()], headers=old_token))[1]["accepted"] == [f"{JS}-1"]
    before = js.record()  # signed with k1 before the rotation, delivered after it
    clock.advance(3600)
    old_kid, js.kid = js.kid, js.new_key()
    second = await gw.register(js, jwks=js.jwks(js.kid))
    assert second != first
    resp, body = await gw.push(None, [], headers=old_token)  # the old client is retired with its tokens
    assert (resp.status, body["error"]) == (401, "invalid_token")
    resp = await gw.h.client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": first,
                                                        "client_secret": gw.h.secrets[first]})
    assert resp.status == 401
    late = js.record(kid=old_kid, iat=int(clock.time()) + 1)  # k1, dated after its retirement
    fresh = js.record()  # k2
    resp, body = await gw.push(second, [before, late, fresh])
    assert body["accepted"] == [f"{JS}-2", f"{JS}-4"]
    assert body["rejected"][0]["error"] == "unknown_key"
    assert "not valid at the record's iat" in body["rejected"][0]["error_description"]
    [partner] = await gw.h.app[CROSSTAB].partners()
    assert [k["valid_until"] is not None for k in partner["keys"]] == [True, False]


# --- GET /crosstab/v1/outbox and jwks.json ------------------------------------------------


async def _issue(gw: GatewayKit, *, domestic_only: bool, n: int = 1) -> list[str]:
    runtime = gw.h.app[CROSSTAB]
    out = []
    for i in range(n):
        sub = uscc(f"91310000MA1K{i + (100 if domestic_only else 0):05d}")
        draft = evaluation(sub, "tax_credit", "B", dt.date(2025, 4, 1), dt.date(2026, 3, 31))
        draft = Draft(**{**vars(draft), "domestic_only": domestic_only})
        out.append((await runtime.region.issue(draft)).jti)
    return out


async def test_domestic_only_records_never_reach_a_partner_abroad(gw: GatewayKit, clock: FixedClock) -> None:
    """Hong Kong (not domestic), even registered as domestic, never pulls a domestic-only record; Jiangsu does."""
    shared = await _issue(gw, domestic_only=False, n=2)
    domestic = await _issue(gw, domestic_only=True)
    jiangsu = await gw.register(PartnerKit(JS, clock), domestic=True)
    hong_kong = await gw.register(PartnerKit(HK, clock), domestic=True)  # claims domestic; not in the set
    not_flagged = await gw.register(PartnerKit(ZJ, clock))  # in the set, not registered as domestic
    resp, body = await gw.pull(jiangsu, "?after=0")
    assert [verify_record(r, gw.h.app[CROSSTAB].jwks()["keys"][0]).jti for r in body["records"]] == shared + domestic
    for client in (hong_kong, not_flagged):
        resp, body = await gw.pull(client, "?after=0&limit=500")
        assert [verify_record(r, gw.h.app[CROSSTAB].jwks()["keys"][0]).jti for r in body["records"]] == shared
        entry = await gw.entry(resp.headers["Audit-Entry"])
        assert entry["served"] == shared and entry["direction"] == "out"


async def test_outbox_pages_with_a_cursor(gw: GatewayKit, clock: FixedClock) -> None:
    """after/limit page through the outbox in seq order; next is the last seq served."""
    jtis = await _issue(gw, domestic_only=False, n=5)
    client = await gw.register(PartnerKit(JS, clock))
    seen, after = [], 0
    while True:
        _, body = await gw.pull(client, f"?after={after}&limit=2")
        if not body["records"]:
            break
        seen += [verify_record(r, gw.h.app[CROSSTAB].jwks()["keys"][0]).jti for r in body["records"]]
        after = body["next"]
    assert (seen, after) == (jtis, 5)


@pytest.mark.parametrize("query", ["?after=-1", "?after=abc", "?limit=0", "?after=1e3", "?after=%EF%BC%91"])
async def test_outbox_bad_parameters_are_400(gw: GatewayKit, clock: FixedClock, query: str) -> None:
    """Malformed cursors and limits are refused with a description naming the parameter."""
    client = await gw.register(PartnerKit(JS, clock))
    resp, body = await gw.pull(client, query)
    assert (resp.status, body["error"]) == (400, "invalid_request")
    assert ("after" in body["error_description"]) or ("limit" in body["error_description"])


async def test_jwks_is_public_and_has_no_private_part(gw: GatewayKit) -> None:
    """Anyone may fetch our keys; each has a kid and none carries 'd'."""
    resp = await gw.h.client.get("/crosstab/v1/jwks.json")
    [key] = (await resp.json())["keys"]
    assert resp.status == 200 and key["kid"].startswith(SH) and "d" not in key and key["crv"] == "Ed25519"


# --- no audit, no exchange ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def write_lock_held(db: Path) -> AsyncIterator[None]:
    """Another connection holds the database's write lock, so the audit log cannot append."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(other.execute, "BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
    finally:
        other.close()


async def test_no_records_leave_when_the_audit_log_cannot_record(make_gateway: Any, clock: FixedClock,
                                                                  tmp_path: Path) -> None:
    """With the log's database locked, a pull answers 503 audit_unavailable with no records and no entry."""
    db = tmp_path / "locked.db"
    kit = GatewayKit(await make_gateway(clock=clock, db_url=f"sqlite:///{db}", database={"busy_timeout": 0.2},
                                        crosstab={"enabled": True, "region": SH}))
    await _issue(kit, domestic_only=False)
    client = await kit.register(PartnerKit(JS, clock))
    headers = await kit.bearer(client)
    async with write_lock_held(db):
        resp = await kit.h.client.get("/crosstab/v1/outbox?after=0", headers=headers)
        body = await resp.json()
        assert (resp.status, body["error"], "Audit-Entry" in resp.headers) == (503, "audit_unavailable", False)
        assert "records" not in body
        resp = await kit.h.client.post("/crosstab/v1/inbox", json={"records": []}, headers=headers)
        assert resp.status == 503 and "Audit-Entry" not in resp.headers
    resp, body = await kit.pull(client, "?after=0")
    assert resp.status == 200 and len(body["records"]) == 1
