"""Record validation, the matching key, and CSV header mapping (双公示 headers and field codes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consistency.records import (
    HeaderMap,
    RecordProblem,
    comparable,
    key_of,
    lifecycle_problem,
    validate,
)


def test_key_is_normalized(f: SimpleNamespace) -> None:
    """Kind, code and decision number are normalized into the key."""
    record = f.record(1, uscc=" " + f.uscc(1).lower(), decision_number="京朝市监罚（2025）1号")
    assert key_of(record) == ("penalty", f.uscc(1), "京朝市监罚〔2025〕1号")


@pytest.mark.parametrize(("change", "why"), [
    ({"kind": "fine"}, "kind must be one of"),
    ({"uscc": None}, "uscc is missing"),
    ({"uscc": " "}, "uscc is missing"),
    ({"decision_number": ""}, "decision_number is empty"),
    ({"decision_number": None}, "decision_number is missing"),
    ({"decision_date": "2025-02-30"}, "decision_date: '2025-02-30' is not a real date"),
    ({"disclosure_end": "someday"}, "disclosure_end"),
    ({"fine_amount": "lots"}, "fine_amount"),
    ({"violation_facts": {"nested": 1}}, "violation_facts: must be a string"),
    ({"disclosure_start": "2025-13-01"}, "disclosure_start"),
])
def test_invalid_records(f: SimpleNamespace, change: dict[str, object], why: str) -> None:
    """Each way a record can be invalid gives a reason naming the field."""
    with pytest.raises(RecordProblem, match=why.replace("(", r"\(")):
        validate(f.record(1, **change))


def test_not_an_object() -> None:
    """A JSON value that is not an object is not a record."""
    with pytest.raises(RecordProblem):
        validate(["penalty"])


def test_comparable_leaves_out_lifecycle_personal_and_empty(f: SimpleNamespace) -> None:
    """Lifecycle, key, personal and empty fields are never compared."""
    record = f.record(1, legal_representative_id_number="x", remarks="  ", severity=None)
    values = comparable(record)
    for name in ("record_id", "status", "removed_at", "disclosure_start", "disclosure_end",
                 "kind", "uscc", "decision_number", "legal_representative_id_number",
                 "remarks", "severity"):
        assert name not in values
    assert values["fine_amount"] == comparable({"fine_amount": "15000元"})["fine_amount"]


def test_lifecycle_problems(f: SimpleNamespace) -> None:
    """An authority record needs a known status, and removed_at once it is not disclosed."""
    assert lifecycle_problem(f.record(1)) is None
    assert "status" in str(lifecycle_problem(f.record(1, status="gone")))
    assert "removed_at is null" in str(lifecycle_problem(f.record(1, status="repaired")))
    assert "removed_at" in str(lifecycle_problem(f.record(1, removed_at="later")))


def test_chinese_penalty_headers() -> None:
    """The national standard's Chinese headers map to our fields, the kind is implied."""
    headers = ["\ufeff行政相对人名称", "统一社会信用代码", "行政处罚决定书文号", "处罚决定日期",
               "公示截止期", "罚款金额（万元）", "处罚机关", "违法行为类型", "处罚依据",
               "处罚类别", "处罚内容", "法定代表人证件号码", "本地备用列"]
    mapping = HeaderMap(headers)
    assert mapping.kind == "penalty"
    assert mapping.fields == [
        "subject_name", "uscc", "decision_number", "decision_date", "disclosure_end",
        "fine_amount", "authority", "violation_type", "legal_basis", "penalty_category",
        "penalty_content", "legal_representative_id_number", None]


def test_field_codes_and_licences() -> None:
    """CF_* and XK_* field codes map in any case; XK_ headers mean licences."""
    assert HeaderMap(["CF_XDR_MC", "cf_xdr_shxym", "CF_WSH", "CF_JDRQ", "CF_GSJZQ",
                      "CF_NR_FK"]).fields == [
        "subject_name", "uscc", "decision_number", "decision_date", "disclosure_end",
        "fine_amount"]
    licence = HeaderMap(["XK_XDR_MC", "XK_XDR_SHXYM", "XK_WSH", "许可证书名称", "XK_YXQZI"])
    assert licence.kind == "licence"
    assert licence.fields[-2:] == ["licence_name", "valid_until"]


def test_rows_become_records() -> None:
    """Empty cells are left out; a fine column in yuan gets its unit; kind aliases map."""
    mapping = HeaderMap(["类型", "统一社会信用代码", "decision_number", "罚款金额（元）", "备注"])
    assert mapping.kind is None
    assert mapping.record(["行政处罚", "X", "N1", "15000", ""]) == {
        "kind": "penalty", "uscc": "X", "decision_number": "N1", "fine_amount": "15000元"}


def test_our_own_field_names_work_as_headers() -> None:
    """A CSV written with our JSON field names maps one to one."""
    mapping = HeaderMap(["kind", "uscc", "decision_number", "decision_date"])
    assert mapping.fields == ["kind", "uscc", "decision_number", "decision_date"]
