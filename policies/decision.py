"""Licence decisions: Casbin evaluates, an index keeps it fast.

pycasbin's `enforce` scans every policy row on each call (tens of milliseconds at 10k+ rows).
Rows only ever match their own operator (`r.sub == p.sub` is the first clause of the model), so
`DecisionIndex` partitions the rows by operator and gives each operator a small Casbin
enforcer of its own, built on first use (never eagerly, so loading 50,000 rows costs only the
partitioning). Decisions are cached per (operator partition, data set, purpose, region).

A policy change never edits an index: `replace` returns a new index that shares every
unchanged operator's partition (with its enforcer and cached decisions) and gives each changed
operator a fresh partition, whose new serial number keys the cache, so stale decisions are
unreachable without any sweep. An operator with no rows is denied; the empty index denies
everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import casbin
from casbin.model import Model

from policies.licence import region_matches

MODEL_TEXT = resources.files("policies").joinpath("model.conf").read_text(encoding="utf-8")
Row = tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: Row | None  # the matching policy row (sub, dataset, purpose, region, licence)
    reason: str

    @property
    def licence_id(self) -> str | None:
        return self.rule[4] if self.rule else None


NO_LICENCE = Decision(False, None, "the operator holds no licence in force")


def _region_match(region: str, prefix: str) -> bool:
    return region_matches(region, prefix)


def new_enforcer(rows: Iterable[Sequence[str]] = ()) -> casbin.Enforcer:
    """A Casbin enforcer over the credgate model with `rows` as its policy (no adapter)."""
    model = Model()
    model.load_model_from_text(MODEL_TEXT)
    enforcer = casbin.Enforcer(model)
    enforcer.add_function("regionMatch", _region_match)
    listed = [list(row) for row in rows]
    if listed:
        enforcer.add_policies(listed)
    return enforcer


_serials = itertools.count(1)


class _Partition:
    """One operator's rows; its enforcer is built on the first decision that needs it."""

    __slots__ = ("enforcer", "rows", "serial")

    def __init__(self, rows: tuple[Row, ...]) -> None:
        self.rows = rows
        self.serial = next(_serials)
        self.enforcer: casbin.Enforcer | None = None

    def evaluate(self, sub: str, dataset: str, purpose: str, region: str) -> Decision:
        if self.enforcer is None:
            self.enforcer = new_enforcer(self.rows)
        allowed, explain = self.enforcer.enforce_ex(sub, dataset, purpose, region)
        if allowed:
            return Decision(True, tuple(explain), "licence " + explain[4])
        return Decision(False, None, self._why_not(dataset, purpose, region))

    def _why_not(self, dataset: str, purpose: str, region: str) -> str:
        for_dataset = [row for row in self.rows if row[1] == dataset]
        if not for_dataset:
            return f"the data set '{dataset}' is outside the operator's licence"
        if not any(row[2] in ("*", purpose) for row in for_dataset):
            return f"the purpose '{purpose}' is not licensed for the data set '{dataset}'"
        return f"the region {region} is outside the operator's licence for '{dataset}'"


class DecisionIndex:
    """An immutable snapshot of every licence row, partitioned by operator."""

    def __init__(self, rows: Iterable[Sequence[str]] = (), *, version: int = 0, cache_size: int = 65536) -> None:
        grouped: dict[str, list[Row]] = {}
        for row in rows:
            grouped.setdefault(row[0], []).append(tuple(row))
        self.version = version
        self._parts = {sub: _Partition(tuple(sub_rows)) for sub, sub_rows in grouped.items()}
        self._row_count = sum(len(part.rows) for part in self._parts.values())
        self._cache: dict[tuple[int, str, str, str], Decision] = {}
        self._cache_size = cache_size

    def replace(self, version: int, changed: Mapping[str, Sequence[Sequence[str]]]) -> DecisionIndex:
        """A new index where each operator in `changed` has exactly the given rows (none: removed)."""
        new = DecisionIndex.__new__(DecisionIndex)
        new.version = version
        new._parts = dict(self._parts)
        new._row_count = self._row_count
        new._cache = self._cache  # shared: keys carry partition serials, so stale entries never hit
        new._cache_size = self._cache_size
        for sub, rows in changed.items():
            old = new._parts.pop(sub, None)
            new._row_count -= len(old.rows) if old else 0
            wanted = tuple(tuple(row) for row in rows)
            if not wanted:
                continue
            new._parts[sub] = old if old is not None and old.rows == wanted else _Partition(wanted)
            new._row_count += len(wanted)
        return new

    @property
    def row_count(self) -> int:
        return self._row_count

    @property
    def operator_count(self) -> int:
        return len(self._parts)

    def rows(self, sub: str) -> tuple[Row, ...]:
        part = self._parts.get(sub)
        return part.rows if part else ()

    def decide(self, sub: str, dataset: str, purpose: str, region: str) -> Decision:
        part = self._parts.get(sub)
        if part is None:
            return NO_LICENCE
        key = (part.serial, dataset, purpose, region)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        decision = part.evaluate(sub, dataset, purpose, region)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[key] = decision
        return decision
