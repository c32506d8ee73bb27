"""The check's report: the JSON of CONTRACTS section 5 and a self-contained HTML page.

JSON: `{"as_of", "grace_working_days", "authority": {"records"}, "agencies": [{"name", "records",
"violations", "findings": [...]}]}`. Beyond the contract's members, and only when they apply:
`reason` on a `malformed` finding (why the line is not a valid record), `unavailable` on an
agency whose source could not be read (its message), and `duplicates` on the authority (keys its
feed lists more than once; the first record of a key is the one used).

The HTML page is for a compliance officer: per agency, the violations by class with a bar chart,
then each finding with the authority's and the agency's values side by side and the deadline
that was missed. It loads nothing from anywhere: styles inline, the chart drawn in inline SVG.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from consistency.rules import FINDING_CLASSES, VIOLATION_CLASSES
from credcore.clock import CST

_TEMPLATES = Path(__file__).resolve().parent / "templates"

CLASS_TITLES = {
    "content_mismatch": "Content differs",
    "duration_mismatch": "Other disclosure end",
    "shown_after_expiry": "Shown after expiry",
    "shown_after_removal": "Shown after removal",
    "shown_before_disclosure": "Shown before disclosure",
    "not_in_authority": "Not in the authority's feed",
    "pii_exposed": "Personal ID number exposed",
    "malformed": "Malformed line",
    "missing": "Not shown (coverage)",
}


@dataclass
class AgencyResult:
    """One agency's outcome; `unavailable` holds the reason when its source could not be read."""

    name: str
    source: str
    records: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def violations(self) -> int:
        return sum(1 for finding in self.findings if finding["class"] != "missing")

    def counts(self) -> dict[str, int]:
        """Findings per class, every class listed (zeros included) in the contract's order."""
        found = Counter(finding["class"] for finding in self.findings)
        return {cls: found.get(cls, 0) for cls in FINDING_CLASSES}


@dataclass
class Report:
    as_of: dt.datetime
    grace_working_days: int
    authority_source: str
    authority_records: int
    agencies: list[AgencyResult]
    authority_duplicates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(agency.violations for agency in self.agencies)

    @property
    def unavailable(self) -> list[AgencyResult]:
        return [agency for agency in self.agencies if agency.unavailable is not None]

    def to_json(self) -> dict[str, Any]:
        authority: dict[str, Any] = {"records": self.authority_records}
        if self.authority_duplicates:
            authority["duplicates"] = self.authority_duplicates
        agencies = []
        for agency in self.agencies:
            entry: dict[str, Any] = {"name": agency.name, "records": agency.records,
                                     "violations": agency.violations,
                                     "findings": agency.findings}
            if agency.unavailable is not None:
                entry["unavailable"] = agency.unavailable
            agencies.append(entry)
        return {"as_of": self.as_of.astimezone(CST).isoformat(),
                "grace_working_days": self.grace_working_days,
                "authority": authority, "agencies": agencies}


def render_json(report: Report) -> str:
    """The JSON report, UTF-8 text (Chinese left readable), one trailing newline."""
    return json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render_html(report: Report, *, limit: int = 10_000) -> str:
    """The HTML report; at most `limit` findings per agency are listed (the JSON has them all)."""
    agencies = []
    for agency in report.agencies:
        counts = agency.counts()
        peak = max(counts.values(), default=0) or 1
        agencies.append({
            "name": agency.name, "source": agency.source, "records": agency.records,
            "violations": agency.violations, "unavailable": agency.unavailable,
            "bars": [{"cls": cls, "title": CLASS_TITLES[cls], "count": count,
                      "width": round(300 * count / peak), "violation": cls in VIOLATION_CLASSES}
                     for cls, count in counts.items()],
            "findings": agency.findings[:limit],
            "hidden": max(0, len(agency.findings) - limit),
        })
    template = _environment().get_template("report.html")
    return template.render(
        as_of=report.as_of.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S %Z"),
        grace=report.grace_working_days, authority_source=report.authority_source,
        authority_records=report.authority_records, duplicates=report.authority_duplicates,
        agencies=agencies, titles=CLASS_TITLES, violations=report.violations, shown=_shown,
    )
