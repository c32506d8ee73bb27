"""What a penalty says: violation, legal basis, category, content, fine and severity.

Severity decides the category (a warning is minor; suspension or revocation is serious), the
fine's range and the disclosure period (DOMAIN.md). Fines are drawn in yuan, rounded as
decisions round them, and reported in units of 10,000 CNY (CF_NR_FK), so 15,000 yuan is 1.5.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from credstore.vocab import VIOLATIONS

FIELDS = (
    "violation_type", "violation_facts", "legal_basis", "penalty_category", "penalty_content",
    "fine_amount", "severity",
)
# Category (CF_CFLB, several joined by ";") per severity, with weights.
_CATEGORIES: dict[str, tuple[tuple[str, int], ...]] = {
    "minor": (("警告", 3), ("罚款", 6), ("警告;罚款", 1)),
    "ordinary": (("罚款", 7), ("罚款;没收违法所得", 3)),
    "serious": (
        ("罚款", 4), ("罚款;没收违法所得", 2), ("责令停产停业;罚款", 2), ("暂扣许可证;罚款", 1),
        ("吊销许可证;罚款", 1),
    ),
}
# Fine range in yuan and the rounding step, per severity.
_FINES = {"minor": (500, 10_000, 100), "ordinary": (10_000, 200_000, 1000),
          "serious": (200_000, 5_000_000, 10_000)}
# Disclosure months per severity: minor ≤ 3, ordinary 3-12, serious 12-36 (DOMAIN.md).
_MONTHS = {"minor": (1, 2, 3, 3, 3), "ordinary": (3, 6, 6, 12, 12), "serious": (12, 24, 36, 36)}
_SEVERE = ("责令停产停业", "暂扣许可证", "吊销许可证")


@dataclass(frozen=True)
class Content:
    agency: str
    violation_type: str
    violation_facts: str
    legal_basis: str
    penalty_category: str
    penalty_content: str
    fine_amount: float
    severity: str

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def _cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _yuan(rng: random.Random, low: int, high: int, step: int) -> int:
    """A log-uniform amount in [low, high], rounded down to `step`, never below `step`."""
    amount = low * (high / low) ** rng.random()
    return max(step, int(amount // step) * step)


def draw(rng: random.Random, decision: date, *, severity: str | None = None) -> Content:
    """A penalty decided on `decision`; `severity` forces one, else the violation's own range."""
    candidates = [v for v in VIOLATIONS if severity is None or severity in v.severities]
    violation = rng.choice(candidates)
    chosen = severity or rng.choice(violation.severities)
    names, weights = zip(*_CATEGORIES[chosen], strict=True)
    category = rng.choices(names, weights=weights)[0]
    started = decision - timedelta(days=rng.randint(20, 180))
    parts: list[str] = []
    fine = 0
    if "警告" in category:
        parts.append("给予警告")
    if "罚款" in category:
        fine = _yuan(rng, *_FINES[chosen])
        parts.append(f"处罚款人民币{fine}元")
    if "没收违法所得" in category:
        parts.append(f"没收违法所得人民币{_yuan(rng, 1000, 100_000, 100)}元")
    if "责令停产停业" in category:
        parts.append(f"责令停产停业{rng.choice((1, 3, 6))}个月")
    if "暂扣许可证" in category:
        parts.append("暂扣许可证六个月")
    if "吊销许可证" in category:
        parts.append("吊销许可证")
    return Content(
        agency=violation.agency,
        violation_type=violation.violation_type,
        violation_facts=violation.facts.format(
            d=_cn_date(started), v=_yuan(rng, 2000, 500_000, 100)
        ),
        legal_basis=violation.legal_basis,
        penalty_category=category,
        penalty_content="，".join(parts) + "。",
        # yuan / 10,000 as a float: the shortest repr of an exact decimal such as 1.5 or 0.35.
        fine_amount=fine / 10_000,
        severity=chosen,
    )


def disclosure_months(rng: random.Random, severity: str) -> int:
    return rng.choice(_MONTHS[severity])


def repair_after_months(content: Content) -> int | None:
    """The minimum period before early repair, or None when the penalty cannot be repaired.

    Minor penalties expire within three months anyway; suspension and revocation cannot be
    repaired early (SAMR Order 45).
    """
    if content.severity == "minor" or any(s in content.penalty_category for s in _SEVERE):
        return None
    return 3 if content.severity == "ordinary" else 12


def listing_facts(rng: random.Random, decision: date) -> dict[str, str]:
    """Values for a listing reason's placeholders: {f} violation, {d} date, {v} yuan."""
    violation = rng.choice([v.violation_type for v in VIOLATIONS if "serious" in v.severities])
    earlier = decision - timedelta(days=rng.randint(30, 200))
    return {"f": violation, "d": _cn_date(earlier), "v": str(_yuan(rng, 50_000, 5_000_000, 100))}
