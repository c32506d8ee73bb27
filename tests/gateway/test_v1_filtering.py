"""Minimum necessary: only licensed fields leave, personal ID numbers never do (not as a field,
not inside free text, not in full-width digits), credit codes are left whole, and the audit
entry says which fields left and the digest of every record released."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import rfc8785
from aiohttp import web

from credcore.codes import resident_id_check_char, uscc_check_char
from tests.conftest import OPERATOR_LICENCE, ServeApp

NARROW_FIELDS = ["record_id", "uscc", "decision_number", "decision_date", "penalty_content"]
NARROW = {**OPERATOR_LICENCE, "datasets": {"penalties": NARROW_FIELDS}}
ID_NUMBER = "11010519491231002X"
FULL_WIDTH_ID = "".join(chr(ord(c) + 0xFEE0) for c in ID_NUMBER)  # １１０１…Ｘ
ANY_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def all_digit_code_that_looks_like_an_id() -> str:
    """A valid credit code whose digits also pass every check of a GB 11643 ID number."""
    for seq in range(1000):
        body = f"51010419850312{seq:03d}"
        if uscc_check_char(body) == resident_id_check_char(body):
            return body + uscc_check_char(body)
    raise AssertionError("no such code")


async def audit_entry(harness: Any, index: int) -> dict[str, Any]:
    auditor = await harness.token("auditor")
    resp = await harness.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                    headers={"Authorization": f"Bearer {auditor}"})
    entry: dict[str, Any] = json.loads(base64.b64decode((await resp.json())["entries"][0]["leaf"]))
    return entry


def assert_entry_describes(entry: dict[str, Any], body: dict[str, Any], raw: bytes) -> None:
    """The entry names exactly the fields released and, per record, the JCS digest as released."""
    released = sorted({key for record in body["records"] for key in record})
    assert entry["fields"] == released
    expected = [{"id": r.get("record_id", ""), "sha256": hashlib.sha256(rfc8785.dumps(r)).hexdigest()}
                for r in body["records"]]
    assert entry["records"] == expected
    assert entry["body_sha256"] == hashlib.sha256(raw).hexdigest()


async def test_fields_outside_the_licence_are_stripped(gateway: Any, sample_code: str) -> None:
    """An operator licensed for five penalty fields gets those five and nothing else."""
    await gateway.add_client("narrow", licence=NARROW)
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", await gateway.token("narrow"))
    raw = await resp.read()
    body = json.loads(raw)
    assert resp.status == 200, body
    assert body["records"]
    for record in body["records"]:
        assert set(record) <= set(NARROW_FIELDS) and "record_id" in record, record
    entry = await audit_entry(gateway, int(resp.headers["Audit-Entry"]))
    assert_entry_describes(entry, body, raw)
    assert {"legal_representative", "legal_representative_id_number", "violation_facts"} <= set(entry["stripped"])
    assert entry["licence"] == "narrow-L1"


async def test_a_repeated_read_is_described_as_fully_as_the_first(gateway: Any, sample_code: str) -> None:
    """The second read of unchanged data is served from the release memo: same body, and its own
    entry still names the fields, record digests and body digest; a different licence's read of
    the same store answer is filtered under its own terms."""
    await gateway.add_client("narrow", licence=NARROW)
    narrow = await gateway.token("narrow")
    answers = []
    for _ in range(2):
        resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", narrow)
        raw = await resp.read()
        entry = await audit_entry(gateway, int(resp.headers["Audit-Entry"]))
        assert_entry_describes(entry, json.loads(raw), raw)
        answers.append((raw, entry["body_sha256"]))
    assert answers[0] == answers[1]
    resp = await gateway.get(f"/v1/entities/{sample_code}/penalties", await gateway.token("op"))
    raw = await resp.read()
    entry = await audit_entry(gateway, int(resp.headers["Audit-Entry"]))
    assert_entry_describes(entry, json.loads(raw), raw)
    assert raw != answers[0][0]


async def test_dataset_outside_the_licence_is_refused(gateway: Any, sample_code: str) -> None:
    """The narrow operator asking for licences (not licensed) gets 403 and no data."""
    await gateway.add_client("narrow", licence=NARROW)
    resp = await gateway.get(f"/v1/entities/{sample_code}/licences", await gateway.token("narrow"))
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope", body
    entry = await audit_entry(gateway, int(resp.headers["Audit-Entry"]))
    assert (entry["decision"], entry["fields"], entry["records"]) == ("deny", [], [])


async def test_id_numbers_never_leave_the_real_store(gateway: Any, dataset: Any, sample_code: str) -> None:
    """With every field licensed, no legal representative's ID number reaches the operator."""
    token = await gateway.token("op")
    numbers = {r["legal_representative_id_number"] for r in dataset.records} | {
        e["legal_representative_id_number"] for e in dataset.entities}
    for path in (f"/v1/entities/{sample_code}", f"/v1/entities/{sample_code}/penalties",
                 f"/v1/entities/{sample_code}/licences", "/v1/lists/serious-untrustworthy?limit=1000",
                 "/v1/disclosures?limit=1000"):
        resp = await gateway.get(path, token)
        text = await resp.text()
        assert resp.status == 200, (path, text)
        assert "id_number" not in text, path
        assert not [n for n in numbers if n in text], path


@pytest.fixture
def crafted_store(serve_app: ServeApp) -> Callable[[dict[str, Any]], Awaitable[str]]:
    """A store on loopback that answers every /v1 request with one fixed JSON body."""

    async def start(body: dict[str, Any]) -> str:
        async def answer(_request: web.Request) -> web.Response:
            return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))

        app = web.Application()
        app.router.add_get("/v1/{tail:.*}", answer)
        return await serve_app(app)

    return start


async def test_id_numbers_in_free_text_are_masked_and_codes_kept(make_gateway: Any, crafted_store: Any) -> None:
    """ID numbers inside text (ASCII or full-width) are masked; credit codes, even all-digit, are kept."""
    code = all_digit_code_that_looks_like_an_id()
    huawei = "914403001922038216"  # all digits, but no ID number (no province 91)
    record = {
        "record_id": "CF-900001", "kind": "penalty", "uscc": code, "authority_uscc": code,
        "subject_name": "成都市某某有限公司", "decision_number": f"罚字〔2026〕{huawei}号",
        "legal_representative": "张三", "legal_representative_id_number": ID_NUMBER,
        "violation_facts": f"法定代表人张三（身份证号{ID_NUMBER}）未按规定公示；联系人证件{ID_NUMBER.lower()}。",
        "penalty_content": f"责令改正，罚款。当事人证件：{FULL_WIDTH_ID}。",
        "legal_basis": {"text": f"经办人 {ID_NUMBER}", "nested": [f"复核人{ID_NUMBER}"], "id_number": ID_NUMBER},
    }
    upstream = await crafted_store({"uscc": code, "records": [record], "next": None})
    harness = await make_gateway(upstream=upstream)
    resp = await harness.get(f"/v1/entities/{code}/penalties", await harness.token("op"))
    raw = await resp.read()
    body = json.loads(raw)
    assert resp.status == 200, body
    (got,) = body["records"]
    assert body["uscc"] == code and got["uscc"] == code and got["authority_uscc"] == code
    assert got["decision_number"] == f"罚字〔2026〕{huawei}号"
    assert "legal_representative_id_number" not in got and got["legal_representative"] == "张三"
    assert got["violation_facts"] == f"法定代表人张三（身份证号{'*' * 18}）未按规定公示；联系人证件{'*' * 18}。"
    assert got["penalty_content"] == f"责令改正，罚款。当事人证件：{'*' * 18}。"
    assert got["legal_basis"] == {"text": f"经办人 {'*' * 18}", "nested": [f"复核人{'*' * 18}"]}
    # No 18-character ID-shaped token is left but the credit codes themselves.
    leftovers = set(ANY_ID.findall(raw.decode())) - {code, huawei}
    assert not leftovers and FULL_WIDTH_ID not in raw.decode()
    entry = await audit_entry(harness, int(resp.headers["Audit-Entry"]))
    assert_entry_describes(entry, body, raw)
    assert entry["uscc"] == [code] and "legal_representative_id_number" in entry["stripped"]
    assert ID_NUMBER not in json.dumps(entry)


async def test_fields_the_store_adds_later_are_stripped(make_gateway: Any, crafted_store: Any,
                                                        sample_code: str) -> None:
    """A field the catalogue does not know (say, a new `home_address`) never leaves."""
    record = {"record_id": "CF-1", "uscc": sample_code, "home_address": "北京市朝阳区某路1号",
              "penalty_content": "罚款"}
    harness = await make_gateway(upstream=await crafted_store({"uscc": sample_code, "records": [record]}))
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    body = await resp.json()
    assert body["records"] == [{"record_id": "CF-1", "uscc": sample_code, "penalty_content": "罚款"}]
    entry = await audit_entry(harness, int(resp.headers["Audit-Entry"]))
    assert entry["stripped"] == ["home_address"]
