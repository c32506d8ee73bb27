"""Factories shared by the consistency tests: valid codes, records, feeds on disk, the CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

from consistency.cli import consistency
from credcore.clock import CST, FixedClock
from credcore.codes import resident_id_check_char, uscc_check_char


def make_uscc(n: int, *, letters: bool = True) -> str:
    """A valid credit code; `letters=False` gives an all-digit body (17 leading digits)."""
    body = f"9111010{'5MA' if letters else '500'}{n:07d}"[:17]
    return body + uscc_check_char(body)


def make_resident_id(born: str = "19900307", region: str = "110101", seq: str = "003") -> str:
    body = region + born + seq
    return body + resident_id_check_char(body)


AUTHORITY_USCC = "11110105MB0123456" + uscc_check_char("11110105MB0123456")


def base_record(n: int = 1, **changes: Any) -> dict[str, Any]:
    """An authority penalty record, disclosed from 2025-03-06 to 2026-03-05."""
    record: dict[str, Any] = {
        "record_id": f"CF-{n:06d}", "kind": "penalty", "uscc": make_uscc(n),
        "subject_name": f"北京某某{n}科技有限公司", "decision_number": f"京朝市监罚〔2025〕{n}号",
        "authority": "北京市朝阳区市场监督管理局", "authority_uscc": AUTHORITY_USCC,
        "decision_date": "2025-03-05", "disclosure_start": "2025-03-06",
        "disclosure_end": "2026-03-05", "status": "disclosed", "removed_at": None,
        "violation_type": "虚假宣传", "violation_facts": "当事人发布虚假广告，违反《广告法》。",
        "legal_basis": "《中华人民共和国广告法》第五十五条", "penalty_category": "罚款",
        "penalty_content": "罚款人民币1.5万元", "fine_amount": 1.5, "severity": "ordinary",
    }
    record.update(changes)
    return record


def shown(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The agency's copy of an authority record: lifecycle fields left out."""
    out = {k: v for k, v in record.items()
           if k not in ("status", "removed_at", "disclosure_start", "record_id")}
    out.update(changes)
    return out


def write_lines(path: Path, items: Iterable[dict[str, Any] | str], *, newline: str = "\n",
                encoding: str = "utf-8") -> Path:
    """Write records (dicts as JSON) or raw lines (strings) as a JSONL file."""
    text = newline.join(
        item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items)
    path.write_bytes((text + newline).encode(encoding))
    return path


AS_OF = dt.datetime(2025, 10, 20, 12, 0, tzinfo=CST)


@pytest.fixture
def feeds(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """Write an authority feed and one agency snapshot; returns their paths."""

    def make(authority: Iterable[dict[str, Any] | str],
             agency: Iterable[dict[str, Any] | str]) -> tuple[str, str]:
        a = write_lines(tmp_path / "authority.jsonl", authority)
        g = write_lines(tmp_path / "agency.jsonl", agency)
        return str(a), str(g)

    return make


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Invoke `consistency` in-process with a fixed clock (2025-10-20 12:00 CST)."""

    def invoke(*args: str, clock: FixedClock | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(consistency, list(args),
                             obj={"clock": clock or FixedClock(AS_OF)}, catch_exceptions=False)

    return invoke


@pytest.fixture
def check(feeds: Callable[..., tuple[str, str]]) -> Callable[..., list[dict[str, Any]]]:
    """Run the check on in-memory records; returns the one agency's findings."""
    import asyncio

    from consistency.check import run_check

    def run(authority: list[Any], agency: list[Any], *, as_of: dt.datetime = AS_OF,
            grace: int = 3) -> list[dict[str, Any]]:
        a, g = feeds(authority, agency)
        report = asyncio.run(run_check(a, [("agency", g)], as_of, grace))
        return report.agencies[0].findings

    return run


def classes(findings: list[dict[str, Any]]) -> list[str]:
    return [finding["class"] for finding in findings]


@pytest.fixture
def f() -> SimpleNamespace:
    """The plain helpers (tests cannot import conftest under --import-mode=importlib)."""
    return SimpleNamespace(uscc=make_uscc, resident_id=make_resident_id, record=base_record,
                           shown=shown, write=write_lines, classes=classes, AS_OF=AS_OF)
