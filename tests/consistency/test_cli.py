"""`consistency check`: exit codes, one-line errors, output formats, the injected clock."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import Result

from credcore.clock import CST, FixedClock

Cli = Callable[..., Result]
Feeds = Callable[..., tuple[str, str]]
ROOT = Path(__file__).resolve().parents[2]


def one_line_error(result: Result) -> str:
    """The stderr of a failed run: exactly one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[0]


def test_exit_0_without_violations(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """A clean agency: exit 0 and the JSON report on stdout."""
    record = f.record(1)
    authority, agency = feeds([record], [f.shown(record)])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["agencies"][0]["violations"] == 0 and result.stderr == ""


def test_exit_1_with_violations(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """Any violation makes the exit code 1."""
    record = f.record(1)
    authority, agency = feeds([record], [f.shown(record, fine_amount=7)])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["agencies"][0]["findings"][0]["class"] == "content_mismatch"


def test_missing_alone_is_not_a_violation(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """Coverage gaps are reported but keep the exit code 0."""
    authority, agency = feeds([f.record(1), f.record(2)], [f.shown(f.record(1))])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["agencies"][0]["findings"][0]["class"] == "missing"


def test_as_of_defaults_to_the_injected_clock(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """Without --as-of the clock decides; with it, the option does (a date is 00:00 CST)."""
    record = f.record(1, status="repaired", removed_at="2025-09-30T15:00:00+08:00")
    authority, agency = feeds([record], [f.shown(record)])
    late = cli("check", "--authority", authority, "--agency", f"a={agency}",
               clock=FixedClock(dt.datetime(2025, 10, 12, 9, tzinfo=CST)))
    assert late.exit_code == 1
    assert json.loads(late.stdout)["as_of"] == "2025-10-12T09:00:00+08:00"
    on_time = cli("check", "--authority", authority, "--agency", f"a={agency}",
                  "--as-of", "2025-10-11")
    assert on_time.exit_code == 0
    assert json.loads(on_time.stdout)["as_of"] == "2025-10-11T00:00:00+08:00"
    utc = cli("check", "--authority", authority, "--agency", f"a={agency}",
              "--as-of", "2025-10-11T16:00:00Z", "--grace-working-days", "3")
    assert utc.exit_code == 1  # 00:00 CST on 12 October


def test_malformed_authority_line_exits_2(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """A bad authority line: exit 2, one line naming the source and the line."""
    authority, agency = feeds([f.record(1), "", "{oops"], [f.shown(f.record(1))])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert authority in line and "line 3" in line and "not valid JSON" in line


def test_invalid_authority_record_exits_2(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """An impossible date in the authority feed is fatal too."""
    authority, agency = feeds([f.record(1, decision_date="2025-02-30")], [])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}")
    assert result.exit_code == 2
    assert "line 1: decision_date" in one_line_error(result)


def test_unreadable_authority_exits_2(cli: Cli, feeds: Feeds, f: SimpleNamespace,
                                      tmp_path: Path) -> None:
    """A missing authority file: exit 2 naming it."""
    _, agency = feeds([], [])
    missing = str(tmp_path / "missing.jsonl")
    result = cli("check", "--authority", missing, "--agency", f"a={agency}")
    assert result.exit_code == 2
    assert missing in one_line_error(result)


@pytest.mark.parametrize("args", [
    ["--agency", "a=x.jsonl"],
    ["--authority", "a.jsonl"],
    ["--authority", "a.jsonl", "--agency", "no-equals-sign"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--as-of", "last tuesday"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--as-of", "2025-10-11T10:00:00"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--grace-working-days", "-1"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--format", "pdf"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--encoding", "klingon"],
    ["--authority", "a.jsonl", "--agency", "a=x", "--agency", "a=y"],
])
def test_usage_errors_exit_2(cli: Cli, args: list[str]) -> None:
    """Bad or missing options: exit 2 and no traceback."""
    result = cli("check", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unavailable_agency(cli: Cli, feeds: Feeds, f: SimpleNamespace, tmp_path: Path) -> None:
    """An agency that cannot be read: exit 2, unless --allow-unavailable."""
    authority, agency = feeds([f.record(1)], [f.shown(f.record(1))])
    args = ["check", "--authority", authority, "--agency", f"good={agency}",
            "--agency", f"gone={tmp_path / 'gone.jsonl'}"]
    strict = cli(*args)
    assert strict.exit_code == 2
    assert "agency gone unavailable" in one_line_error(strict)
    assert json.loads(strict.stdout)["agencies"][1]["unavailable"]
    assert cli(*args, "--allow-unavailable").exit_code == 0


def test_calendar_gap_is_a_clear_error(cli: Cli, feeds: Feeds, f: SimpleNamespace) -> None:
    """A deadline in a year the holiday calendar lacks: exit 2, one clear line."""
    record = f.record(1, disclosure_start="2098-01-01", disclosure_end="2098-12-31",
                      decision_date="2098-01-01")
    authority, agency = feeds([record], [f.shown(record)])
    result = cli("check", "--authority", authority, "--agency", f"a={agency}",
                 "--as-of", "2099-06-01")
    assert result.exit_code == 2
    assert "does not cover" in one_line_error(result)


def test_html_output_file(cli: Cli, feeds: Feeds, f: SimpleNamespace, tmp_path: Path) -> None:
    """--format html --output writes the page; stdout stays empty."""
    record = f.record(1)
    authority, agency = feeds([record], [f.shown(record, fine_amount=2)])
    out = tmp_path / "report.html"
    result = cli("check", "--authority", authority, "--agency", f"a={agency}",
                 "--format", "html", "--output", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    assert "content_mismatch" in out.read_text(encoding="utf-8")


def test_encoding_option(cli: Cli, f: SimpleNamespace, tmp_path: Path) -> None:
    """--encoding gb18030 reads a GB18030 CSV export."""
    record = f.record(1)
    authority = f.write(tmp_path / "a.jsonl", [record])
    export = tmp_path / "agency.csv"
    export.write_bytes(("统一社会信用代码,行政处罚决定书文号,处罚决定日期\r\n"
                        f"{record['uscc']},{record['decision_number']},2025年3月5日\r\n")
                       .encode("gb18030"))
    result = cli("check", "--authority", str(authority), "--agency", f"csv={export}",
                 "--encoding", "gb18030")
    assert result.exit_code == 0, result.stderr


@pytest.mark.slow
def test_subprocess_exit_codes(feeds: Feeds, f: SimpleNamespace, tmp_path: Path) -> None:
    """Run as a process, the group exits 1 on violations and 2 with one line on a bad feed."""
    record = f.record(1)
    authority, agency = feeds([record], [f.shown(record, fine_amount=5)])
    command = [sys.executable, "-c", "from consistency.cli import consistency; consistency()",
               "check", "--authority", authority, "--agency", f"a={agency}", "--as-of",
               "2025-10-20"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["agencies"][0]["violations"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "penalty"}\n', encoding="utf-8")
    command[command.index(authority)] = str(bad)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "line 1" in done.stderr
    assert "Traceback" not in done.stderr
