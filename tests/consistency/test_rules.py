"""Every finding class of CONTRACTS section 5, and no finding for differences of format alone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credcore.clock import CST

Check = Callable[..., list[dict[str, Any]]]


def at(day: str, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), CST)


def test_identical_copy_has_no_finding(check: Check, f: SimpleNamespace) -> None:
    """An agency showing exactly the authority's records is clean."""
    records = [f.record(n) for n in range(1, 4)]
    assert check(records, [f.shown(r) for r in records]) == []


def test_format_only_differences_are_not_findings(check: Check, f: SimpleNamespace) -> None:
    """Dates, brackets, amounts in 元, full-width forms and spaces do not make a finding."""
    record = f.record(1, subject_name="北京ABC科技有限公司")
    agency = f.shown(record, decision_date="2025年3月5日", disclosure_end="20260305",
                     decision_number="京朝市监罚（2025）1号", fine_amount="15000元",
                     subject_name="　北京ＡＢＣ科技有限公司 ", uscc=record["uscc"].lower(),
                     violation_facts=" 当事人发布虚假广告,违反《广告法》。", kind=" penalty")
    assert check([record], [agency]) == []


def test_left_out_and_null_fields_are_not_compared(check: Check, f: SimpleNamespace) -> None:
    """A field the agency omits or sets to null, or the authority lacks, is not compared."""
    record = f.record(1)
    agency = f.shown(record, violation_facts=None, remarks="agency note", disclosure_end=None)
    del agency["legal_basis"]
    assert check([record], [agency]) == []


def test_content_mismatch_lists_each_field(check: Check, f: SimpleNamespace) -> None:
    """Changed fields are listed with both values, raw as each side wrote them."""
    record = f.record(1)
    findings = check([record], [f.shown(record, fine_amount="2万元", authority="别的机关")])
    assert f.classes(findings) == ["content_mismatch"]
    finding = findings[0]
    assert finding["key"] == {"kind": "penalty", "uscc": record["uscc"],
                              "decision_number": record["decision_number"]}
    assert finding["record_id"] == "CF-000001" and finding["line"] == 1
    assert {(x["field"], x["authority"], x["agency"]) for x in finding["fields"]} == {
        ("fine_amount", 1.5, "2万元"), ("authority", record["authority"], "别的机关")}


def test_authority_fields_beyond_the_catalogue_are_compared(check: Check,
                                                            f: SimpleNamespace) -> None:
    """A field outside the known catalogue is still compared (the slow path)."""
    record = f.record(1, local_code="A1")
    assert check([record], [f.shown(record)]) == []
    findings = check([record], [f.shown(record, local_code="B2")])
    assert findings[0]["fields"] == [{"field": "local_code", "authority": "A1", "agency": "B2"}]


def test_duration_mismatch(check: Check, f: SimpleNamespace) -> None:
    """Another disclosure_end, or one where the authority has none, is a duration mismatch."""
    record = f.record(1)
    findings = check([record], [f.shown(record, disclosure_end="2027-03-05")])
    assert f.classes(findings) == ["duration_mismatch"]
    assert findings[0]["fields"] == [{"field": "disclosure_end", "authority": "2026-03-05",
                                      "agency": "2027-03-05"}]
    open_ended = f.record(2, disclosure_end=None)
    assert f.classes(check([open_ended], [f.shown(open_ended, disclosure_end="2026-01-01")])) == [
        "duration_mismatch"]


def test_shown_after_removal_crossing_national_day(check: Check, f: SimpleNamespace) -> None:
    """Repaired on 30 Sep 2025: the 3 working days are 9, 10 and (adjusted) Sat 11 Oct."""
    record = f.record(1, status="repaired", removed_at="2025-09-30T15:00:00+08:00")
    agency = [f.shown(record)]
    assert check([record], agency, as_of=at("2025-10-11", 23)) == []
    findings = check([record], agency, as_of=at("2025-10-12", 0))
    assert f.classes(findings) == ["shown_after_removal"]
    assert findings[0]["deadline"] == "2025-10-11"
    assert {x["field"]: x["authority"] for x in findings[0]["fields"]} == {
        "status": "repaired", "removed_at": "2025-09-30T15:00:00+08:00"}


def test_shown_after_expiry_crossing_national_day(check: Check, f: SimpleNamespace) -> None:
    """Disclosure ended 26 Sep 2025: deadline is 30 Sep, counting the adjusted Sunday 28 Sep."""
    record = f.record(1, disclosure_end="2025-09-26")
    agency = [f.shown(record)]
    assert check([record], agency, as_of=at("2025-09-30", 20)) == []
    findings = check([record], agency, as_of=at("2025-10-01"))
    assert f.classes(findings) == ["shown_after_expiry"]
    assert findings[0]["deadline"] == "2025-09-30"


def test_grace_is_a_setting(check: Check, f: SimpleNamespace) -> None:
    """With one working day of grace the same record is late on 29 September."""
    record = f.record(1, disclosure_end="2025-09-26")
    assert f.classes(check([record], [f.shown(record)], as_of=at("2025-09-29"), grace=1)) == [
        "shown_after_expiry"]


def test_earlier_of_removal_and_expiry(check: Check, f: SimpleNamespace) -> None:
    """A record removed after its disclosure ended is late by the expiry's deadline."""
    record = f.record(1, disclosure_end="2025-09-01", status="withdrawn",
                      removed_at="2025-09-20T10:00:00+08:00")
    findings = check([record], [f.shown(record)], as_of=at("2025-09-10"))
    assert f.classes(findings) == ["shown_after_expiry"]


def test_shown_before_disclosure(check: Check, f: SimpleNamespace) -> None:
    """An agency showing a record before the authority discloses it is in violation."""
    record = f.record(1, disclosure_start="2025-10-25")
    findings = check([record], [f.shown(record)])
    assert f.classes(findings) == ["shown_before_disclosure"]
    assert findings[0]["fields"][0]["authority"] == "2025-10-25"


def test_not_in_authority_and_missing(check: Check, f: SimpleNamespace) -> None:
    """An unknown key is a violation; a disclosed record left out is coverage only."""
    first, second = f.record(1), f.record(2)
    removed = f.record(3, status="repaired", removed_at="2025-05-01T09:00:00+08:00")
    findings = check([first, second, removed], [f.shown(first), f.shown(f.record(9))])
    assert f.classes(findings) == ["not_in_authority", "missing"]
    assert findings[0]["line"] == 2
    assert findings[1] == {"class": "missing", "key": {
        "kind": "penalty", "uscc": second["uscc"], "decision_number": second["decision_number"]},
        "record_id": "CF-000002"}


def test_malformed_lines_are_reported_and_the_run_goes_on(check: Check,
                                                         f: SimpleNamespace) -> None:
    """Bad JSON, non-objects, bad keys and impossible dates are malformed, with line numbers."""
    records = [f.record(n) for n in range(1, 3)]
    agency = ["{not json", "[1, 2]", {"kind": "penalty", "uscc": "X"},
              f.shown(records[0], decision_date="2025-02-30"), f.shown(records[1])]
    findings = check(records, agency)
    malformed = [x for x in findings if x["class"] == "malformed"]
    assert [x["line"] for x in malformed] == [1, 2, 3, 4]
    assert "not valid JSON" in malformed[0]["reason"]
    assert "JSON object" in malformed[1]["reason"]
    assert "decision_number" in malformed[2]["reason"]
    assert "not a real date" in malformed[3]["reason"]
    # The line after them was judged (clean), and the malformed record counts as not shown.
    assert f.classes(findings).count("missing") == 1


def test_duplicate_keys_in_an_agency(check: Check, f: SimpleNamespace) -> None:
    """A key shown twice is reported on its second line, naming the first."""
    record = f.record(1)
    findings = check([record], [f.shown(record), f.shown(record, decision_date="2025/3/5"),
                                f.shown(f.record(7)), f.shown(f.record(7))])
    assert f.classes(findings) == ["malformed", "not_in_authority", "malformed"]
    assert findings[0]["line"] == 2 and "line 1" in findings[0]["reason"]
    assert findings[2]["line"] == 4 and "line 3" in findings[2]["reason"]


def test_pii_id_number_field(check: Check, f: SimpleNamespace) -> None:
    """An *_id_number field with a value is exposed PII, and its value never reaches the report."""
    record = f.record(1)
    number = f.resident_id()
    findings = check([record], [f.shown(record, legal_representative_id_number=number)])
    assert f.classes(findings) == ["pii_exposed"]
    assert findings[0]["fields"] == [{"field": "legal_representative_id_number",
                                      "authority": None, "agency": "*" * 18}]


@pytest.mark.parametrize("spell", [str, lambda n: n.translate(
    str.maketrans("0123456789", "０１２３４５６７８９"))])
def test_pii_id_number_in_text(check: Check, f: SimpleNamespace, spell: Any) -> None:
    """A resident ID number inside any value (full-width too) is found and masked."""
    record = f.record(1)
    number = spell(f.resident_id())
    agency = f.shown(record, remarks=f"法定代表人身份证{number}")
    findings = check([record], [agency])
    assert "pii_exposed" in f.classes(findings)
    exposed = next(x for x in findings if x["class"] == "pii_exposed")
    assert exposed["fields"][0]["field"] == "remarks"
    assert f.resident_id() not in str(findings)


def test_all_digit_credit_code_is_not_pii(check: Check, f: SimpleNamespace) -> None:
    """A credit code that is also a valid-looking ID number is not PII in a code field."""
    from credcore.codes import (
        is_resident_id,
        is_valid_uscc,
        resident_id_check_char,
        uscc_check_char,
    )

    bodies = (f"51010419850312{seq:03d}" for seq in range(1000))
    body = next(b for b in bodies if uscc_check_char(b) == resident_id_check_char(b))
    code = body + uscc_check_char(body)
    assert is_valid_uscc(code) and is_resident_id(code)
    record = f.record(1, uscc=code, authority_uscc=code)
    assert check([record], [f.shown(record)]) == []
    # The same digits in a free-text field are an ID number.
    assert "pii_exposed" in f.classes(check([record], [f.shown(record, remarks=code)]))


def test_invalid_id_numbers_are_not_pii(check: Check, f: SimpleNamespace) -> None:
    """18 digits with a wrong check character or date are just numbers."""
    record = f.record(1)
    wrong = f.resident_id()[:17] + ("0" if f.resident_id()[17] != "0" else "1")
    findings = check([record], [f.shown(record, remarks=f"编号{wrong}")])
    assert "pii_exposed" not in f.classes(findings)


def test_pii_in_a_malformed_line_is_still_reported(check: Check, f: SimpleNamespace) -> None:
    """A record too broken to match can still leak an ID number."""
    findings = check([f.record(1)], [{"kind": "penalty", "remarks": f.resident_id()}])
    assert f.classes(findings)[:2] == ["malformed", "pii_exposed"]


def test_authority_duplicates_keep_the_first(f: SimpleNamespace, tmp_path: Any) -> None:
    """A key repeated in the authority feed is reported; its first record is used."""
    import asyncio

    from consistency.check import run_check

    first = f.record(1)
    again = f.record(1, fine_amount=9, record_id="CF-999999")
    authority = f.write(tmp_path / "a.jsonl", [first, again])
    agency = f.write(tmp_path / "g.jsonl", [f.shown(first)])
    report = asyncio.run(run_check(str(authority), [("g", str(agency))], f.AS_OF))
    assert report.authority_records == 2
    assert report.authority_duplicates == [{"key": {
        "kind": "penalty", "uscc": first["uscc"], "decision_number": first["decision_number"]},
        "line": 2, "first_line": 1}]
    assert report.agencies[0].findings == []


_SPELL_DATE = [
    lambda d: d.isoformat(), lambda d: d.strftime("%Y/%m/%d"), lambda d: d.strftime("%Y.%m.%d"),
    lambda d: d.strftime("%Y%m%d"), lambda d: f"{d.year}年{d.month}月{d.day}日",
]
_BRACKETS = [("〔", "〕"), ("[", "]"), ("［", "］"), ("(", ")"), ("（", "）"), ("【", "】")]


@given(date_style=st.sampled_from(range(5)), end_style=st.sampled_from(range(5)),
       bracket=st.sampled_from(_BRACKETS), fine_style=st.sampled_from(range(4)),
       pad=st.sampled_from(["", " ", "\u3000", "\t"]), drop=st.sets(st.sampled_from(
           ["violation_facts", "legal_basis", "severity", "disclosure_end", "authority_uscc"])),
       lower=st.booleans())
@settings(max_examples=60, deadline=None)
def test_no_finding_for_any_mix_of_format_differences(
        date_style: int, end_style: int, bracket: tuple[str, str], fine_style: int, pad: str,
        drop: set[str], lower: bool) -> None:
    """Any combination of format-only differences and left-out fields gives no finding."""
    from consistency.index import AuthorityIndex, LineStore
    from consistency.rules import AgencyCheck

    authority = _record(fine_amount=0.35, subject_name="上海ＸＹ贸易有限公司")
    store = LineStore(None)
    index = AuthorityIndex(dt.datetime(2025, 10, 20, tzinfo=CST), store)
    data = json.dumps(authority, ensure_ascii=False).encode()
    index.add(1, authority, store.spool(data), len(data))
    agency = {k: v for k, v in authority.items() if k not in ("status", "removed_at")}
    agency["decision_date"] = _SPELL_DATE[date_style](dt.date(2025, 3, 5))
    agency["disclosure_end"] = _SPELL_DATE[end_style](dt.date(2026, 3, 5))
    agency["decision_number"] = f"沪市监罚{bracket[0]}2025{bracket[1]}7号"
    agency["fine_amount"] = [0.35, "0.35", "3500元", "0.350万元"][fine_style]
    agency["subject_name"] = pad + "上海XY贸易有限公司" + pad
    agency["uscc"] = agency["uscc"].lower() if lower else agency["uscc"]
    for name in drop:
        agency.pop(name)
    check = AgencyCheck("a", index, 3)
    check.feed_line(1, json.dumps(agency, ensure_ascii=False).encode())
    store.close()
    assert check.finish() == []


def _record(**changes: Any) -> dict[str, Any]:
    from credcore.codes import uscc_check_char

    body = "91310115MA1K4PQ7"[:17].ljust(17, "0")
    record: dict[str, Any] = {
        "record_id": "CF-1", "kind": "penalty", "uscc": body + uscc_check_char(body),
        "subject_name": "x", "decision_number": "沪市监罚〔2025〕7号", "authority": "上海市市场监督管理局",
        "authority_uscc": body + uscc_check_char(body), "decision_date": "2025-03-05",
        "disclosure_start": "2025-03-06", "disclosure_end": "2026-03-05", "status": "disclosed",
        "removed_at": None, "violation_facts": "当事人，违反规定。", "legal_basis": "某法第一条",
        "severity": "minor",
    }
    record.update(changes)
    return record
