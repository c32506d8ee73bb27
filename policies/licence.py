"""Licences: what an operator may read, for what purpose, where, when and how much.

`parse_licence` turns untrusted JSON (admin API, CLI, demo) into a `Licence`, or raises
InvalidParameter naming the offending field; nothing half-valid gets through. `policy_rows`
compiles a licence into the Casbin rows of policies/model.conf.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from credcore.errors import InvalidParameter
from policies.catalogue import DATASETS

MAX_VALIDITY = dt.timedelta(days=5 * 366)  # an authorization lasts at most 5 years
STATUSES = ("active", "suspended", "revoked", "expired")
_REGION = re.compile(r"^\d{6}$")
_PURPOSE = re.compile(r"^[a-z0-9_:.-]{1,64}$|^\*$")


@dataclass(frozen=True)
class Quotas:
    rate_per_second: float = 10.0
    burst: int = 20
    per_day: int | None = None
    per_month: int | None = None
    page_size_max: int = 100


@dataclass(frozen=True)
class Licence:
    licence_id: str
    client_id: str
    datasets: Mapping[str, frozenset[str]]
    purposes: frozenset[str]
    regions: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    quotas: Quotas = field(default_factory=Quotas)
    status: str = "active"
    # Used when a request declares no X-Purpose; None means such requests are refused.
    default_purpose: str | None = None

    def in_force(self, now: dt.datetime) -> bool:
        return self.status == "active" and self.not_before <= now < self.not_after

    def to_json(self) -> dict[str, Any]:
        return {"licence_id": self.licence_id, "client_id": self.client_id, **self.terms()}

    def terms(self) -> dict[str, Any]:
        """The licence as `parse_licence` reads it (without its ids)."""
        return {
            "datasets": {name: sorted(fields) for name, fields in sorted(self.datasets.items())},
            "purposes": sorted(self.purposes),
            "regions": list(self.regions),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "quotas": {
                "rate_per_second": self.quotas.rate_per_second,
                "burst": self.quotas.burst,
                "per_day": self.quotas.per_day,
                "per_month": self.quotas.per_month,
                "page_size_max": self.quotas.page_size_max,
            },
            "status": self.status,
            "default_purpose": self.default_purpose,
        }


def region_prefix(division: str) -> str:
    """"310000" → "31", "310100" → "3101", "310115" → "310115", "000000" → "*"."""
    if division == "000000":
        return "*"
    prefix = division
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def region_matches(region: str, prefix: str) -> bool:
    return prefix == "*" or region == "*" or region.startswith(prefix)


def _require(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise InvalidParameter(name, f"The licence needs '{name}'.")
    return data[name]


def _time(data: Mapping[str, Any], name: str) -> dt.datetime:
    raw = _require(data, name)
    try:
        value = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(name, f"'{name}' must be an RFC 3339 time.") from exc
    if value.tzinfo is None:
        raise InvalidParameter(name, f"'{name}' must carry a timezone offset.")
    return value


def _count(raw: Any, name: str, *, allow_none: bool = True) -> int | None:
    if raw is None and allow_none:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise InvalidParameter(name, f"'{name}' must be a non-negative integer.")
    return raw


def _quotas(raw: Any) -> Quotas:
    if raw is None:
        return Quotas()
    if not isinstance(raw, Mapping):
        raise InvalidParameter("quotas", "'quotas' must be an object.")
    unknown = set(raw) - {"rate_per_second", "burst", "per_day", "per_month", "page_size_max"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameter(f"quotas.{name}", f"'quotas.{name}' is not a known quota.")
    rate = raw.get("rate_per_second", Quotas.rate_per_second)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
        raise InvalidParameter("quotas.rate_per_second", "'quotas.rate_per_second' must be a positive number.")
    burst = _count(raw.get("burst", Quotas.burst), "quotas.burst", allow_none=False)
    page = _count(raw.get("page_size_max", Quotas.page_size_max), "quotas.page_size_max", allow_none=False)
    if not burst or not page:
        raise InvalidParameter("quotas.burst", "'quotas.burst' and 'quotas.page_size_max' must be at least 1.")
    return Quotas(
        rate_per_second=float(rate),
        burst=burst,
        per_day=_count(raw.get("per_day"), "quotas.per_day"),
        per_month=_count(raw.get("per_month"), "quotas.per_month"),
        page_size_max=page,
    )


def _datasets(raw: Any) -> dict[str, frozenset[str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidParameter("datasets", "'datasets' must map at least one data set to its fields.")
    result: dict[str, frozenset[str]] = {}
    for name, fields in raw.items():
        if name not in DATASETS:
            raise InvalidParameter(f"datasets.{name}", f"'{name}' is not a data set (known: {', '.join(sorted(DATASETS))}).")
        if fields == "*":
            result[name] = DATASETS[name]
            continue
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise InvalidParameter(f"datasets.{name}", f"the fields of '{name}' must be a list of names or \"*\".")
        unknown = sorted(set(fields) - DATASETS[name])
        if unknown:
            raise InvalidParameter(f"datasets.{name}", f"'{unknown[0]}' is not a field of data set '{name}'.")
        result[name] = frozenset(fields)
    return result


def parse_licence(data: Any, *, licence_id: str, client_id: str) -> Licence:
    """Validate untrusted licence JSON; raise InvalidParameter naming the first bad field."""
    if not isinstance(data, Mapping):
        raise InvalidParameter("licence", "A licence must be a JSON object.")
    known = {"datasets", "purposes", "regions", "not_before", "not_after", "quotas", "status", "default_purpose"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidParameter(unknown[0], f"'{unknown[0]}' is not a licence field.")
    purposes = _require(data, "purposes")
    if not isinstance(purposes, list) or not purposes or not all(isinstance(p, str) and _PURPOSE.match(p) for p in purposes):
        raise InvalidParameter("purposes", "'purposes' must be a non-empty list of purpose names (a-z, 0-9, _:.-) or \"*\".")
    regions = _require(data, "regions")
    if not isinstance(regions, list) or not regions or not all(isinstance(r, str) and _REGION.match(r) for r in regions):
        raise InvalidParameter("regions", "'regions' must be a non-empty list of 6-digit GB/T 2260 division codes.")
    not_before, not_after = _time(data, "not_before"), _time(data, "not_after")
    if not_after <= not_before:
        raise InvalidParameter("not_after", "'not_after' must be later than 'not_before'.")
    if not_after - not_before > MAX_VALIDITY:
        raise InvalidParameter("not_after", "A licence may last at most 5 years.")
    status = data.get("status", "active")
    if status not in STATUSES:
        raise InvalidParameter("status", f"'status' must be one of {', '.join(STATUSES)}.")
    default_purpose = data.get("default_purpose")
    if default_purpose is not None and (default_purpose == "*" or default_purpose not in purposes and "*" not in purposes):
        raise InvalidParameter("default_purpose", "'default_purpose' must be one of the licence's purposes.")
    if default_purpose is not None and not _PURPOSE.match(str(default_purpose)):
        raise InvalidParameter("default_purpose", "'default_purpose' must be a purpose name.")
    return Licence(
        default_purpose=default_purpose,
        licence_id=licence_id,
        client_id=client_id,
        datasets=_datasets(_require(data, "datasets")),
        purposes=frozenset(purposes),
        regions=tuple(sorted(set(regions))),
        not_before=not_before,
        not_after=not_after,
        quotas=_quotas(data.get("quotas")),
        status=status,
    )


def policy_rows(licence: Licence) -> list[list[str]]:
    """The Casbin `p` rows a licence grants: one per data set × purpose × region prefix."""
    return [
        [licence.client_id, dataset, purpose, region_prefix(region), licence.licence_id]
        for dataset in sorted(licence.datasets)
        for purpose in sorted(licence.purposes)
        for region in licence.regions
    ]
