"""The /v1 path end to end on one gateway: token, licence, store, filter, audit."""

from __future__ import annotations


async def test_operator_reads_penalties_with_audit_entry(gateway, sample_code) -> None:
    """An operator with a licence gets the penalties and an Audit-Entry header."""
    token = await gateway.token("op")
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", token)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["records"], body
    assert "Audit-Entry" in resp.headers
    for record in body["records"]:
        assert "legal_representative_id_number" not in record
