"""File sources: BOMs, CRLF, blank lines, encodings, and CSV exports with the standard's headers."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from consistency.check import run_check
from consistency.errors import SourceError
from consistency.rules import BadLine
from consistency.sources import FileSource, detect_encoding

HEADERS = ["行政相对人名称", "统一社会信用代码", "行政处罚决定书文号", "处罚决定日期", "公示截止期",
           "罚款金额（万元）", "处罚机关", "违法行为类型", "处罚依据", "处罚类别", "处罚内容"]
FIELDS = ["subject_name", "uscc", "decision_number", "decision_date", "disclosure_end",
          "fine_amount", "authority", "violation_type", "legal_basis", "penalty_category",
          "penalty_content"]


def items(source: FileSource) -> list[Any]:
    async def collect() -> list[Any]:
        return [item async for batch in source.batches() for item in batch]

    return asyncio.run(collect())


def findings(f: SimpleNamespace, authority: list[dict[str, Any]], agency: Path,
             **options: Any) -> list[dict[str, Any]]:
    path = f.write(agency.parent / "authority.jsonl", authority)
    report = asyncio.run(run_check(str(path), [("g", str(agency))], f.AS_OF, **options))
    assert report.agencies[0].unavailable is None, report.agencies[0].unavailable
    return report.agencies[0].findings


def test_bom_crlf_and_blank_lines(f: SimpleNamespace, tmp_path: Path) -> None:
    """A BOM, CRLF line ends, blank lines and a stray mid-file BOM change nothing."""
    records = [f.record(n) for n in range(1, 4)]
    lines = [f.shown(r) for r in records]
    first, second, third = (_json(line) for line in lines)
    text = f"\ufeff{first}\r\n\r\n   \r\n\ufeff{second}\r\n{third}"
    agency = tmp_path / "agency.jsonl"
    agency.write_bytes(text.encode("utf-8"))
    assert [line for line, _, _ in items(FileSource(str(agency)))] == [1, 4, 5]
    assert findings(f, records, agency) == []


def test_line_numbers_count_blank_lines(f: SimpleNamespace, tmp_path: Path) -> None:
    """A malformed line is reported at its physical line number."""
    agency = f.write(tmp_path / "agency.jsonl", ["", f.shown(f.record(1)), "", "{oops"])
    found = findings(f, [f.record(1)], agency)
    assert [(x["class"], x["line"]) for x in found] == [("malformed", 4)]


def test_authority_offsets_survive_a_bom(f: SimpleNamespace, tmp_path: Path) -> None:
    """The authority line read again for a finding is the right one, BOM or not."""
    record = f.record(1)
    authority = tmp_path / "authority.jsonl"
    authority.write_bytes(("\ufeff" + _json(record) + "\r\n").encode("utf-8"))
    agency = f.write(tmp_path / "agency.jsonl", [f.shown(record, fine_amount=3)])
    report = asyncio.run(run_check(str(authority), [("g", str(agency))], f.AS_OF))
    assert report.agencies[0].findings[0]["record_id"] == "CF-000001"


def test_gb18030_csv_with_chinese_headers(f: SimpleNamespace, tmp_path: Path) -> None:
    """A GB18030 export with the standard's Chinese headers is detected and matched."""
    records = [f.record(n) for n in range(1, 4)]
    rows = [[str(r[name]) for name in FIELDS] for r in records]
    rows[1][FIELDS.index("fine_amount")] = "2"  # a real difference
    rows[2][FIELDS.index("decision_date")] = "2025年3月5日"  # a format-only one
    agency = tmp_path / "agency.csv"
    agency.write_bytes(_csv([HEADERS, *rows]).encode("gb18030"))
    assert detect_encoding(agency.read_bytes()) == "gb18030"
    found = findings(f, records, agency)
    assert [(x["class"], x["line"]) for x in found] == [("content_mismatch", 3)]
    assert found[0]["fields"] == [{"field": "fine_amount", "authority": 1.5, "agency": "2"}]


def test_encoding_option_and_field_codes(f: SimpleNamespace, tmp_path: Path) -> None:
    """--encoding is honoured; the CF_* field codes work as headers; a UTF-8 BOM is skipped."""
    records = [f.record(1)]
    codes = ["CF_XDR_MC", "CF_XDR_SHXYM", "CF_WSH", "CF_JDRQ", "CF_GSJZQ", "CF_NR_FK"]
    row = [str(records[0][name]) for name in FIELDS[:6]]
    gb = tmp_path / "gb.csv"
    gb.write_bytes(_csv([codes, row]).encode("gb18030"))
    assert findings(f, records, gb, encoding="gb18030") == []
    utf = tmp_path / "utf.csv"
    utf.write_bytes(b"\xef\xbb\xbf" + _csv([codes, row]).encode("utf-8"))
    assert findings(f, records, utf) == []


def test_undecodable_lines_are_malformed(f: SimpleNamespace, tmp_path: Path) -> None:
    """A line that is not valid in the file's encoding is malformed; the others are read."""
    record = f.record(1)
    agency = tmp_path / "agency.jsonl"
    agency.write_bytes(_json(f.shown(record)).encode() + b"\n\xff\xfe{bad}\n")
    found = findings(f, [record], agency, encoding="utf-8")
    assert [(x["class"], x["line"]) for x in found] == [("malformed", 2)]
    csv_file = tmp_path / "agency.csv"
    row = [str(record[name]) for name in FIELDS]
    csv_file.write_bytes(_csv([HEADERS, row]).encode("utf-8") + b"\xff\xfe,x\r\n")
    found = findings(f, [record], csv_file, encoding="utf-8")
    assert [(x["class"], x["line"]) for x in found] == [("malformed", 3)]


def test_csv_rows_too_wide_are_malformed(f: SimpleNamespace, tmp_path: Path) -> None:
    """A row with more cells than the header is malformed."""
    record = f.record(1)
    row = [str(record[name]) for name in FIELDS]
    agency = tmp_path / "agency.csv"
    agency.write_text(_csv([HEADERS, row + ["extra"]]), encoding="utf-8")
    found = findings(f, [record], agency)
    assert f.classes(found) == ["malformed", "missing"] and found[0]["line"] == 2
    assert "cells" in found[0]["reason"]


def test_csv_without_key_columns_is_refused(tmp_path: Path) -> None:
    """A CSV lacking the uscc or decision-number column cannot be checked at all."""
    agency = tmp_path / "agency.csv"
    agency.write_text("行政相对人名称,处罚决定日期\r\nX,2025-03-05\r\n", encoding="utf-8")
    with pytest.raises(SourceError, match="no uscc column"):
        items(FileSource(str(agency)))


def test_unreadable_file() -> None:
    """A missing file is a SourceError naming it."""
    with pytest.raises(SourceError, match="nowhere.jsonl: cannot read"):
        FileSource("/nowhere.jsonl")


def test_gb18030_jsonl(f: SimpleNamespace, tmp_path: Path) -> None:
    """JSON Lines in GB18030 are recoded, then checked like UTF-8."""
    record = f.record(1)
    agency = tmp_path / "agency.jsonl"
    agency.write_bytes((_json(f.shown(record)) + "\n").encode("gb18030"))
    assert findings(f, [record], agency) == []
    assert all(not isinstance(p, BadLine) for _, p, _ in items(FileSource(str(agency))))


def _json(record: dict[str, Any]) -> str:
    import json

    return json.dumps(record, ensure_ascii=False)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()
