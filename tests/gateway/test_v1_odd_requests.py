"""Requests that are odd at the HTTP level still get the contract's answer and an audit entry:
header bytes that are not UTF-8, a request line in absolute form, methods other than GET, and
a suspended operator's refusal recorded under its name. Raw request lines over a socket, so no
client library tidies them first."""

from __future__ import annotations

import json
from typing import Any

from tests.gateway.test_v1_paths import CODE, audit_entry, raw_get


async def test_a_purpose_that_is_not_utf8_is_refused_on_the_record(make_gateway: Any) -> None:
    """Latin-1 bytes in X-Purpose: refused by the licence (403) and recorded, escaped; without a
    token, 401 and recorded. Never a 500, never a false 503 audit_unavailable."""
    harness = await make_gateway()
    op, auditor = await harness.token("op"), await harness.token("auditor")
    status, headers, body = await raw_get(harness, f"/v1/entities/{CODE}".encode(),
                                          {"Authorization": f"Bearer {op}", "X-Purpose": b"caf\xe9"})
    assert status == 403 and json.loads(body)["error"] == "insufficient_scope", body
    entry = await audit_entry(harness, auditor, int(headers["audit-entry"]))
    assert entry["client_id"] == "op" and entry["request"]["purpose"] == "caf\\udce9"
    status, headers, body = await raw_get(harness, f"/v1/entities/{CODE}".encode(), {"X-Purpose": b"\xff\xfe"})
    assert status == 401 and "audit-entry" in headers, body


async def test_a_request_line_in_absolute_form_is_refused_on_the_record(make_gateway: Any) -> None:
    harness = await make_gateway()
    auditor = await harness.token("auditor")
    target = f"http://127.0.0.1/v1/entities/{CODE}".encode()
    status, headers, body = await raw_get(harness, target, {"Authorization": f"Bearer {await harness.token('op')}"})
    assert status == 400 and json.loads(body)["error"] == "invalid_request", body
    entry = await audit_entry(harness, auditor, int(headers["audit-entry"]))
    assert (entry["decision"], entry["status"]) == ("deny", 400)


async def test_other_methods_answer_after_the_route_and_code_checks(make_gateway: Any) -> None:
    """Route and code come first (CONTRACTS section 3): a bad code is 400 invalid_uscc whatever
    the method; on a real route another method is 405 with `Allow: GET`, audited."""
    harness = await make_gateway()
    auditor = await harness.token("auditor")
    status, _, body = await raw_get(harness, f"/v1/entities/{CODE.lower()}".encode(), {}, method=b"POST")
    assert status == 400 and json.loads(body)["error"] == "invalid_uscc", body
    for method in (b"POST", b"DELETE", b"OPTIONS", b"HEAD"):
        status, headers, body = await raw_get(harness, f"/v1/entities/{CODE}".encode(), {}, method=method)
        assert status == 405 and headers.get("allow") == "GET", (method, headers)
        entry = await audit_entry(harness, auditor, int(headers["audit-entry"]))
        assert (entry["request"]["method"], entry["status"]) == (method.decode(), 405)


async def test_a_suspended_operators_refusal_is_recorded_under_its_name(make_gateway: Any) -> None:
    """Its token is valid, so the operator is known: an incident search by operator finds it."""
    harness = await make_gateway()
    token, auditor = await harness.token("op"), await harness.token("auditor")
    resp = await harness.client.post("/admin/operators/op/suspend", json={"reason": "leak suspected"},
                                     headers={"Authorization": f"Bearer {await harness.token('admin')}"})
    assert resp.status == 200, await resp.text()
    status, headers, body = await raw_get(harness, f"/v1/entities/{CODE}".encode(),
                                          {"Authorization": f"Bearer {token}"})
    assert status == 403 and json.loads(body)["error"] == "operator_suspended", body
    entry = await audit_entry(harness, auditor, int(headers["audit-entry"]))
    assert (entry["client_id"], entry["error"]) == ("op", "operator_suspended")
