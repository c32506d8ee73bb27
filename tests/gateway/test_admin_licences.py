"""The admin API for operators and licences: validation that changes nothing, audit entries for
every change, suspension, resumption and token revocation."""

from __future__ import annotations

from typing import Any

import pytest

from audit.reader import AuditReader
from credcore.errors import AuditUnavailable
from tests.policies.support import admin_call, audit_entries, licence


async def audit_size(gateway) -> int:
    return await AuditReader(gateway.gw.engine).size()


async def last_admin_entry(gateway) -> dict[str, Any]:
    return [e for e in await audit_entries(gateway) if e.get("kind") == "admin"][-1]


async def test_put_then_replace_a_licence(gateway) -> None:
    """PUT creates (201) then replaces (200) a licence; each is an audit entry with the terms."""
    await gateway.add_client("acme")
    status, body = await admin_call(gateway, "PUT", "/admin/operators/acme/licences/acme-2", licence())
    assert status == 201 and body["licence_id"] == "acme-2" and body["in_force"] is True
    entry = await last_admin_entry(gateway)
    assert entry["action"] == "put_licence" and entry["target"] == "acme" and entry["client_id"] == "admin"
    assert entry["details"]["licence_id"] == "acme-2" and entry["details"]["regions"] == ["000000"]
    status, body = await admin_call(gateway, "PUT", "/admin/operators/acme/licences/acme-2",
                                    licence(datasets={"penalties": ["uscc"]}))
    assert status == 200 and body["datasets"] == {"penalties": ["uscc"]}
    assert (await last_admin_entry(gateway))["action"] == "replace_licence"
    status, view = await admin_call(gateway, "GET", "/admin/operators/acme")
    assert status == 200 and [lic["licence_id"] for lic in view["licences"]] == ["acme-2"]


BAD = [
    ("unknown data set", {"datasets": {"scores": "*"}}, "datasets.scores"),
    ("unknown field", {"datasets": {"penalties": ["uscc", "home_address"]}}, "datasets.penalties"),
    ("inverted window", {"not_before": "2027-01-01T00:00:00+08:00", "not_after": "2026-01-01T00:00:00+08:00"},
     "not_after"),
    ("over five years", {"not_before": "2026-01-01T00:00:00+08:00", "not_after": "2031-01-02T00:00:00+08:00"},
     "not_after"),
    ("negative quota", {"quotas": {"per_day": -10}}, "quotas.per_day"),
    ("malformed region", {"regions": ["3100"]}, "regions"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD, ids=[case for case, _, _ in BAD])
async def test_bad_licence_is_a_400_naming_the_field_and_changes_nothing(gateway, case, change, field) -> None:
    """A bad licence answers 400 naming the field; nothing is stored, audited or reloaded."""
    await gateway.add_client("acme", licence=licence())
    store, licensing = gateway.gw.licence_store, gateway.gw.licensing
    before = (await store.version(), await audit_size(gateway), await store.licence("acme-L1"))
    status, body = await admin_call(gateway, "PUT", "/admin/operators/acme/licences/acme-L1", {**licence(), **change})
    assert status == 400 and body["error"] == "invalid_request"
    assert field in body["error_description"]
    # The admin token request above is not an audit entry; nothing else happened either.
    assert (await store.version(), await audit_size(gateway), await store.licence("acme-L1")) == before
    assert licensing.index.rows("acme")  # the old licence still applies
    status, _ = await admin_call(gateway, "PUT", "/admin/operators/acme/licences/acme-new", {**licence(), **change})
    assert status == 400 and await store.licence("acme-new") is None


async def test_create_operator_with_a_licence(gateway, sample_code) -> None:
    """POST /admin/operators creates the OAuth client, the operator and its licence, all audited."""
    status, body = await admin_call(gateway, "POST", "/admin/operators",
                                    {"name": "Acme Credit Ltd", "client_id": "acme", "licence": licence()})
    assert status == 201 and body["client_id"] == "acme" and body["client_secret"]
    gateway.secrets["acme"] = body["client_secret"]
    resp = await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("acme"))
    assert resp.status == 200
    actions = [e["action"] for e in await audit_entries(gateway) if e.get("kind") == "admin" and e["target"] == "acme"]
    assert actions == ["create_client", "put_operator", "put_licence"]


async def test_create_operator_with_a_bad_licence_creates_nothing(gateway) -> None:
    """A new operator with a bad licence is refused whole: no client, no operator, no audit entry."""
    size = await audit_size(gateway)
    status, body = await admin_call(gateway, "POST", "/admin/operators",
                                    {"name": "Bad", "client_id": "bad", "licence": licence(regions=["31A000"])})
    assert status == 400 and "regions" in body["error_description"]
    assert await gateway.gw.oauth.get_client("bad") is None
    assert await gateway.gw.licence_store.operator("bad") is None
    assert await audit_size(gateway) == size


async def test_create_operator_refuses_duplicates_and_unknown_members(gateway) -> None:
    """An existing client id is a 409; an unknown member or a missing name a 400 naming it."""
    status, body = await admin_call(gateway, "POST", "/admin/operators", {"name": "Again", "client_id": "op"})
    assert status == 409 and body["error"] == "conflict"
    status, body = await admin_call(gateway, "POST", "/admin/operators", {"name": "X", "scope": "admin"})
    assert status == 400 and "scope" in body["error_description"]
    status, body = await admin_call(gateway, "POST", "/admin/operators", {"client_id": "noname"})
    assert status == 400 and "name" in body["error_description"]


async def test_list_operators_pages(gateway) -> None:
    """GET /admin/operators lists operators by client id, a page at a time."""
    for n in range(3):
        await gateway.add_client(f"list{n}")
    status, page = await admin_call(gateway, "GET", "/admin/operators?limit=2&after=list")
    assert status == 200 and [o["client_id"] for o in page["operators"]] == ["list0", "list1"]
    status, page = await admin_call(gateway, "GET", f"/admin/operators?limit=2&after={page['next']}")
    assert [o["client_id"] for o in page["operators"]][:1] == ["list2"]


async def test_licence_conflicts(gateway) -> None:
    """A licence id of another operator, or a revoked licence, cannot be overwritten (409)."""
    await gateway.add_client("one", licence=licence())
    await gateway.add_client("two")
    status, _ = await admin_call(gateway, "PUT", "/admin/operators/two/licences/one-L1", licence())
    assert status == 409
    status, body = await admin_call(gateway, "POST", "/admin/operators/one/licences/one-L1/revoke", {"reason": "ended"})
    assert status == 200 and body["status"] == "revoked" and body["in_force"] is False
    status, _ = await admin_call(gateway, "PUT", "/admin/operators/one/licences/one-L1", licence())
    assert status == 409
    status, body = await admin_call(gateway, "GET", "/admin/operators/one/licences/one-L1")
    assert status == 200 and body["status"] == "revoked"


async def test_revoked_licence_refuses_at_once(gateway, sample_code) -> None:
    """Revoking a licence refuses the operator's next request and is an audit entry with the reason."""
    await gateway.add_client("rev", licence=licence())
    token = await gateway.token("rev")
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 200
    status, _ = await admin_call(gateway, "POST", "/admin/operators/rev/licences/rev-L1/revoke", {"reason": "breach"})
    assert status == 200
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 403
    entry = await last_admin_entry(gateway)
    assert entry["action"] == "revoke_licence" and entry["details"] == {"licence_id": "rev-L1", "reason": "breach"}


async def test_unknown_operator_and_missing_rights(gateway) -> None:
    """Unknown operators are 404; an operator's own token gets 403 on the admin API; no token 401."""
    status, _ = await admin_call(gateway, "PUT", "/admin/operators/ghost/licences/g-1", licence())
    assert status == 404
    status, _ = await admin_call(gateway, "POST", "/admin/operators/ghost/suspend", {"reason": "x"})
    assert status == 404
    token = await gateway.token("op")
    resp = await gateway.client.put("/admin/operators/op/licences/op-L1", json=licence(),
                                    headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 403
    resp = await gateway.client.get("/admin/operators/op")
    assert resp.status == 401


async def test_suspend_and_resume_through_the_api(gateway, sample_code) -> None:
    """Suspension refuses at once with 403 operator_suspended and revokes tokens; resuming needs new ones."""
    token = await gateway.token("op")
    path = f"/v1/entities/{sample_code}"
    status, body = await admin_call(gateway, "POST", "/admin/operators/op/suspend", {"reason": ""})
    assert status == 400 and "reason" in body["error_description"]
    status, body = await admin_call(gateway, "POST", "/admin/operators/op/suspend", {"reason": "leak suspected"})
    assert status == 200 and body["status"] == "suspended"
    resp = await gateway.get(path, token)
    assert resp.status == 403 and (await resp.json())["error"] == "operator_suspended"
    entry = await last_admin_entry(gateway)
    assert (entry["action"], entry["target"], entry["details"]["reason"]) == ("suspend", "op", "leak suspected")
    status, view = await admin_call(gateway, "GET", "/admin/operators/op")
    assert view["status"] == "suspended" and view["reason"] == "leak suspected"

    status, _ = await admin_call(gateway, "POST", "/admin/operators/op/resume", {})
    assert status == 200
    assert (await gateway.get(path, token)).status == 401  # the old token died with the suspension
    assert (await gateway.get(path, await gateway.token("op"))).status == 200
    assert (await last_admin_entry(gateway))["action"] == "resume"


async def test_revoke_tokens_through_the_api(gateway, sample_code) -> None:
    """revoke-tokens kills every token issued so far, audited; new tokens work."""
    token = await gateway.token("op")
    status, _ = await admin_call(gateway, "POST", "/admin/operators/op/revoke-tokens", {"reason": "key rotation"})
    assert status == 200
    assert (await gateway.get(f"/v1/entities/{sample_code}", token)).status == 401
    assert (await gateway.get(f"/v1/entities/{sample_code}", await gateway.token("op"))).status == 200
    assert (await last_admin_entry(gateway))["action"] == "revoke_tokens"


class FailingSink:
    async def append(self, entry: dict[str, Any]) -> int:
        raise AuditUnavailable("The audit log cannot record.")


async def test_no_audit_no_admin_change(gateway) -> None:
    """When the audit log cannot record, an admin change answers 503 and is not applied."""
    await gateway.add_client("acme", licence=licence())
    admin_token = await gateway.token("admin")
    real, gateway.gw.audit = gateway.gw.audit, FailingSink()
    try:
        headers = {"Authorization": f"Bearer {admin_token}"}
        resp = await gateway.client.put("/admin/operators/acme/licences/acme-L1",
                                        json=licence(datasets={"penalties": "*"}), headers=headers)
        assert resp.status == 503
        resp = await gateway.client.post("/admin/operators/acme/suspend", json={"reason": "x"}, headers=headers)
        assert resp.status == 503
    finally:
        gateway.gw.audit = real
    row = await gateway.gw.licence_store.licence("acme-L1")
    assert row is not None and row.licence is not None and "entities" in row.licence.datasets
    assert not gateway.gw.licensing.is_suspended("acme")
