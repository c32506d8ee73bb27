"""The JSON report of CONTRACTS section 5 and the self-contained HTML report."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from consistency.check import run_check
from consistency.report import Report, render_html, render_json

FINDING_MEMBERS = {"class", "key", "record_id", "line", "fields", "deadline", "reason"}


def sample_report(f: SimpleNamespace, tmp_path: Path) -> Report:
    """One finding of most classes, from two agencies."""
    records = [f.record(1), f.record(2, status="repaired", removed_at="2025-09-01T10:00:00+08:00"),
               f.record(3, disclosure_end="2025-09-01"), f.record(4), f.record(5)]
    agency = [f.shown(records[0], fine_amount=3, subject_name="<script>x</script>"),
              f.shown(records[1]), f.shown(records[2]),
              f.shown(records[3], disclosure_end="2030-01-01"), f.shown(f.record(9)),
              f.shown(records[0]), "{bad", f.shown(records[4], remarks=f.resident_id())]
    authority = f.write(tmp_path / "a.jsonl", records)
    first = f.write(tmp_path / "g1.jsonl", agency)
    second = f.write(tmp_path / "g2.jsonl", [f.shown(r) for r in records[3:]])
    return asyncio.run(run_check(str(authority), [("一号征信", str(first)), ("two", str(second))],
                                 f.AS_OF))


def test_json_report_schema(f: SimpleNamespace, tmp_path: Path) -> None:
    """Top level, agency and finding members are the contract's."""
    data = json.loads(render_json(sample_report(f, tmp_path)))
    assert set(data) == {"as_of", "grace_working_days", "authority", "agencies"}
    assert data["as_of"] == "2025-10-20T12:00:00+08:00"
    assert data["grace_working_days"] == 3 and data["authority"] == {"records": 5}
    first, second = data["agencies"]
    assert set(first) == {"name", "records", "violations", "findings"}
    assert first["name"] == "一号征信" and first["records"] == 8
    assert first["violations"] == sum(1 for x in first["findings"] if x["class"] != "missing")
    for finding in first["findings"] + second["findings"]:
        assert set(finding) <= FINDING_MEMBERS and "class" in finding
        if "key" in finding:
            assert set(finding["key"]) == {"kind", "uscc", "decision_number"}
        for field in finding.get("fields", []):
            assert set(field) == {"field", "authority", "agency"}
        if "deadline" in finding:
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", finding["deadline"])
    assert {x["class"] for x in first["findings"]} == {
        "content_mismatch", "shown_after_removal", "shown_after_expiry", "duration_mismatch",
        "not_in_authority", "malformed", "pii_exposed"}
    assert second["violations"] == 0
    assert [x["class"] for x in second["findings"]] == ["missing"]  # 2 and 3 are due off


def test_html_report_lists_every_finding(f: SimpleNamespace, tmp_path: Path) -> None:
    """Each finding appears with its fields side by side and its deadline; values are escaped."""
    report = sample_report(f, tmp_path)
    html = render_html(report)
    for agency in report.agencies:
        assert agency.name in html
        for finding in agency.findings:
            assert finding["class"] in html
            if "deadline" in finding:
                assert finding["deadline"] in html
            for field in finding.get("fields", []):
                assert f">{field['field']}<" in html
    assert html.count('class="finding ') == sum(len(a.findings) for a in report.agencies)
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert f.resident_id() not in html
    assert "<svg" in html and "<rect" in html


def test_html_report_has_no_external_references(f: SimpleNamespace, tmp_path: Path) -> None:
    """No src or href points anywhere: the page is self-contained."""
    html = render_html(sample_report(f, tmp_path))
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert "url(" not in html


def test_html_limit_notes_hidden_findings(f: SimpleNamespace, tmp_path: Path) -> None:
    """Past the limit the page says how many findings only the JSON has."""
    html = render_html(sample_report(f, tmp_path), limit=1)
    assert "more findings are in the JSON report" in html


def test_unavailable_agency_in_reports(f: SimpleNamespace, tmp_path: Path) -> None:
    """An agency that could not be read is marked so in both reports."""
    authority = f.write(tmp_path / "a.jsonl", [f.record(1)])
    report = asyncio.run(run_check(str(authority), [("gone", str(tmp_path / "none.jsonl"))],
                                   f.AS_OF))
    entry: dict[str, Any] = json.loads(render_json(report))["agencies"][0]
    assert entry["records"] == 0 and "cannot read" in entry["unavailable"]
    assert "Unavailable" in render_html(report)
