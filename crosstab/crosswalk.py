"""Crosswalks: a partner's scheme and grade to ours, from the tables in policies/crosswalk/.

Each table is one JSON file named after its scheme:

    {"scheme": "csj_enterprise_credit", "name": "...", "maps_to": "public_credit",
     "issuers": ["310000", ...] | null, "grades": {"AAA": "A", ...}}

A grade maps only through an exact entry (case and all). An unknown scheme, an unknown grade,
or a scheme used by a region outside its `issuers` raises UnmappedGrade: a grade is never
guessed, rounded or defaulted, because a recognised grade changes how another region's
company is treated here. Tables are validated on load (a malformed file is a CrosswalkError
naming it), so a bad table stops the process at start, not a record at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from crosstab.errors import CrosswalkError, UnmappedGrade

_SCHEME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REGION = re.compile(r"^[1-9]\d{5}$")


@dataclass(frozen=True)
class MappedGrade:
    """A partner's grade and what it means here."""

    scheme: str
    grade: str
    our_scheme: str
    our_grade: str


@dataclass(frozen=True)
class CrosswalkTable:
    scheme: str
    name: str
    maps_to: str
    grades: Mapping[str, str]
    issuers: frozenset[str] | None  # None: a national scheme any region may use

    @classmethod
    def from_json(cls, data: Any, source: str) -> CrosswalkTable:
        """Validate one table; `source` names the file in errors."""
        if not isinstance(data, dict):
            raise CrosswalkError(f"{source}: a crosswalk table is a JSON object.")
        scheme, maps_to = data.get("scheme"), data.get("maps_to")
        for name, value in (("scheme", scheme), ("maps_to", maps_to)):
            if not isinstance(value, str) or not _SCHEME.match(value):
                raise CrosswalkError(f"{source}: {name} must be a lowercase scheme name.")
        grades = data.get("grades")
        if (
            not isinstance(grades, dict)
            or not grades
            or not all(isinstance(k, str) and k for k in grades)
            or not all(isinstance(v, str) and v for v in grades.values())
        ):
            raise CrosswalkError(f"{source}: grades must map non-empty strings to strings.")
        issuers = data.get("issuers")
        if issuers is not None and (
            not isinstance(issuers, list)
            or not issuers
            or not all(isinstance(r, str) and _REGION.match(r) for r in issuers)
        ):
            raise CrosswalkError(f"{source}: issuers must be null or a list of region codes.")
        return cls(
            scheme=str(scheme),
            name=str(data.get("name") or scheme),
            maps_to=str(maps_to),
            grades=dict(grades),
            issuers=frozenset(issuers) if issuers is not None else None,
        )


class Crosswalk:
    """The loaded tables, by scheme."""

    def __init__(self, tables: Iterable[CrosswalkTable]) -> None:
        self._tables: dict[str, CrosswalkTable] = {}
        for table in tables:
            if table.scheme in self._tables:
                raise CrosswalkError(f"Two crosswalk tables define scheme {table.scheme}.")
            self._tables[table.scheme] = table

    @classmethod
    def from_files(cls, files: Iterable[Traversable | Path]) -> Crosswalk:
        tables = []
        for file in files:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CrosswalkError(f"{file.name}: not readable JSON ({exc}).") from exc
            table = CrosswalkTable.from_json(data, file.name)
            if file.name != f"{table.scheme}.json":
                raise CrosswalkError(f"{file.name}: the file must be named {table.scheme}.json.")
            tables.append(table)
        return cls(tables)

    @classmethod
    def from_directory(cls, path: Path) -> Crosswalk:
        return cls.from_files(sorted(path.glob("*.json")))

    @classmethod
    def packaged(cls) -> Crosswalk:
        """The tables shipped in the `policies` package (policies/crosswalk/*.json)."""
        folder = resources.files("policies") / "crosswalk"
        files = sorted(
            (f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name
        )
        return cls.from_files(files)

    def schemes(self) -> list[str]:
        return sorted(self._tables)

    def table(self, scheme: str) -> CrosswalkTable | None:
        return self._tables.get(scheme)

    def map_grade(self, scheme: str, grade: str, issuer: str | None = None) -> MappedGrade:
        """Our grade for a partner's; raise UnmappedGrade unless a table says exactly."""
        table = self._tables.get(scheme)
        if table is None:
            raise UnmappedGrade(f"No crosswalk for scheme {scheme!r}.")
        if issuer is not None and table.issuers is not None and issuer not in table.issuers:
            raise UnmappedGrade(f"Region {issuer} is not a party to scheme {scheme!r}.")
        ours = table.grades.get(grade)
        if ours is None:
            raise UnmappedGrade(f"Scheme {scheme!r} has no crosswalk for grade {grade!r}.")
        return MappedGrade(scheme=scheme, grade=grade, our_scheme=table.maps_to, our_grade=ours)


@lru_cache(maxsize=1)
def packaged_crosswalk() -> Crosswalk:
    """The shipped tables, loaded once per process."""
    return Crosswalk.packaged()


def map_grade(scheme: str, grade: str, issuer: str | None = None) -> MappedGrade:
    """Map through the shipped tables (see `Crosswalk.map_grade`)."""
    return packaged_crosswalk().map_grade(scheme, grade, issuer)
