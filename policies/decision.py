"""Licence decisions: Casbin evaluates, an index keeps it fast.

pycasbin's `enforce` scans every policy row on each call (tens of milliseconds at 10k+ rows).
Rows only ever match their own operator (`r.sub == p.sub` is the first clause of the model), so
`DecisionIndex` partitions the rows by operator and gives each operator a small Casbin
enforcer of its own, built on first use; decisions are cached per (operator, data set, purpose,
region) and the whole index is replaced when the policy version changes. The empty index
denies everything.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

import casbin
from casbin.model import Model

from policies.licence import region_matches

MODEL_TEXT = resources.files("policies").joinpath("model.conf").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: tuple[str, ...] | None  # the matching policy row (sub, dataset, purpose, region, licence)
    reason: str

    @property
    def licence_id(self) -> str | None:
        return self.rule[4] if self.rule else None


def _region_match(region: str, prefix: str) -> bool:
    return region_matches(region, prefix)


def new_enforcer(rows: Iterable[Sequence[str]] = ()) -> casbin.Enforcer:
    """A Casbin enforcer over the credgate model with `rows` as its policy (no adapter)."""
    model = Model()
    model.load_model_from_text(MODEL_TEXT)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("regionMatch", _region_match)
    rows = [list(row) for row in rows]
    if rows:
        enforcer.add_policies(rows)
    return enforcer


class DecisionIndex:
    """An immutable snapshot of every licence row, partitioned by operator."""

    def __init__(self, rows: Iterable[Sequence[str]], *, version: int = 0, cache_size: int = 65536) -> None:
        self.version = version
        self._rows: dict[str, list[list[str]]] = defaultdict(list)
        for row in rows:
            self._rows[row[0]].append(list(row))
        self._enforcers: dict[str, casbin.Enforcer] = {}
        self._cache: OrderedDict[tuple[str, str, str, str], Decision] = OrderedDict()
        self._cache_size = cache_size

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def decide(self, sub: str, dataset: str, purpose: str, region: str) -> Decision:
        key = (sub, dataset, purpose, region)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = self._evaluate(sub, dataset, purpose, region)
        self._cache[key] = decision
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return decision

    def _evaluate(self, sub: str, dataset: str, purpose: str, region: str) -> Decision:
        rows = self._rows.get(sub)
        if not rows:
            return Decision(False, None, "the operator holds no licence in force")
        enforcer = self._enforcers.get(sub)
        if enforcer is None:
            enforcer = self._enforcers[sub] = new_enforcer(rows)
        allowed, explain = enforcer.enforce_ex(sub, dataset, purpose, region)
        if allowed:
            return Decision(True, tuple(explain), "licence " + explain[4])
        return Decision(False, None, self._why_not(rows, dataset, purpose, region))

    @staticmethod
    def _why_not(rows: list[list[str]], dataset: str, purpose: str, region: str) -> str:
        for_dataset = [row for row in rows if row[1] == dataset]
        if not for_dataset:
            return f"the data set '{dataset}' is outside the operator's licence"
        if not any(row[2] in ("*", purpose) for row in for_dataset):
            return f"the purpose '{purpose}' is not licensed for the data set '{dataset}'"
        return f"the region {region} is outside the operator's licence for '{dataset}'"
