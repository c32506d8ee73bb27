"""Licences: what an operator may read, for what purpose, where, when and how much.

`parse_licence` turns untrusted JSON (admin API, CLI, demo, a stored row) into a `Licence`, or
raises InvalidParameter naming the offending field by its path (`datasets.penalties`,
`quotas.per_day`, ...); nothing half-valid gets through. `policy_rows` compiles a licence into
the Casbin rows of policies/model.conf.

Licence JSON (every key is checked; unknown keys are refused):

    {"datasets": {"penalties": ["uscc", "fine_amount"], "entities": "*"},
     "purposes": ["credit_check"], "default_purpose": "credit_check",
     "regions": ["310000"], "not_before": "2026-01-01T00:00:00+08:00",
     "not_after": "2028-01-01T00:00:00+08:00",
     "quotas": {"rate_per_second": 10, "burst": 20, "per_day": 5000, "per_month": null,
                "page_size_max": 100},
     "status": "active"}
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from credcore.clock import CST
from credcore.codes import PROVINCE_CODES
from credcore.errors import InvalidParameter
from policies.catalogue import DATASETS

MAX_YEARS = 5  # an authorization lasts at most 5 years (发改数据规〔2025〕27号)
MAX_PAGE_SIZE = 1000
MAX_RATE = 1e9
STATUSES = ("active", "suspended", "revoked", "expired")
ALL_REGIONS = "000000"
_REGION = re.compile(r"^\d{6}$")
_PURPOSE = re.compile(r"^[a-z0-9_:.-]{1,64}$")
_LICENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,99}$")
_KEYS = frozenset(
    {"datasets", "purposes", "regions", "not_before", "not_after", "quotas", "status", "default_purpose"}
)
_QUOTA_KEYS = frozenset({"rate_per_second", "burst", "per_day", "per_month", "page_size_max"})


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

    def effective_status(self, now: dt.datetime) -> str:
        """The stored status, or `expired` once `not_after` has passed."""
        if self.status == "active" and now >= self.not_after:
            return "expired"
        return self.status

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
    if division == ALL_REGIONS:
        return "*"
    prefix = division
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def region_matches(region: str, prefix: str) -> bool:
    return prefix == "*" or region == "*" or region.startswith(prefix)


def check_licence_id(licence_id: str) -> None:
    if not _LICENCE_ID.fullmatch(licence_id):
        raise InvalidParameter("licence_id", "'licence_id' is 1-100 of A-Z a-z 0-9 . _ ~ - (starting alphanumeric).")


def plus_years(when: dt.datetime, years: int) -> dt.datetime:
    """The same CST wall-clock time `years` later (29 February becomes 28 February)."""
    local = when.astimezone(CST)
    try:
        return local.replace(year=local.year + years)
    except ValueError:
        return local.replace(year=local.year + years, day=28)


def _require(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise InvalidParameter(name, f"The licence needs '{name}'.")
    return data[name]


def _time(data: Mapping[str, Any], name: str) -> dt.datetime:
    raw = _require(data, name)
    if not isinstance(raw, str):
        raise InvalidParameter(name, f"'{name}' must be an RFC 3339 time string.")
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(name, f"'{name}' must be an RFC 3339 time.") from exc
    if value.tzinfo is None:
        raise InvalidParameter(name, f"'{name}' must carry a timezone offset.")
    return value


def _count(raw: Any, name: str, *, allow_none: bool = True, minimum: int = 0) -> int | None:
    if raw is None and allow_none:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        kind = "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}"
        raise InvalidParameter(name, f"'{name}' must be {kind}{' or null' if allow_none else ''}.")
    return raw


def _quotas(raw: Any) -> Quotas:
    if raw is None:
        return Quotas()
    if not isinstance(raw, Mapping):
        raise InvalidParameter("quotas", "'quotas' must be an object.")
    unknown = sorted(set(raw) - _QUOTA_KEYS)
    if unknown:
        raise InvalidParameter(f"quotas.{unknown[0]}", f"'quotas.{unknown[0]}' is not a known quota.")
    rate = raw.get("rate_per_second", Quotas.rate_per_second)
    if (
        isinstance(rate, bool) or not isinstance(rate, int | float)
        or not math.isfinite(rate) or not 0 < rate <= MAX_RATE
    ):
        raise InvalidParameter("quotas.rate_per_second", "'quotas.rate_per_second' must be a positive finite number.")
    burst = _count(raw.get("burst", Quotas.burst), "quotas.burst", allow_none=False, minimum=1)
    page = _count(raw.get("page_size_max", Quotas.page_size_max), "quotas.page_size_max", allow_none=False, minimum=1)
    if page is not None and page > MAX_PAGE_SIZE:
        raise InvalidParameter("quotas.page_size_max", f"'quotas.page_size_max' must be at most {MAX_PAGE_SIZE}.")
    return Quotas(
        rate_per_second=float(rate),
        burst=burst or 1,
        per_day=_count(raw.get("per_day"), "quotas.per_day"),
        per_month=_count(raw.get("per_month"), "quotas.per_month"),
        page_size_max=page or 1,
    )


def _datasets(raw: Any) -> dict[str, frozenset[str]]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidParameter("datasets", "'datasets' must map at least one data set to its fields.")
    result: dict[str, frozenset[str]] = {}
    for name, fields in raw.items():
        path = f"datasets.{name}"
        if name not in DATASETS:
            known = ", ".join(sorted(DATASETS))
            raise InvalidParameter(path, f"'{path}': '{name}' is not a data set (known: {known}).")
        if fields == "*":
            result[name] = DATASETS[name]
            continue
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            raise InvalidParameter(path, f"'{path}' must be a non-empty list of field names or \"*\".")
        unknown = sorted(set(fields) - DATASETS[name])
        if unknown:
            raise InvalidParameter(path, f"'{path}': '{unknown[0]}' is not a field of data set '{name}'.")
        result[name] = frozenset(fields)
    return result


def _purposes(raw: Any) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise InvalidParameter("purposes", "'purposes' must be a non-empty list of purpose names.")
    for purpose in raw:
        if not isinstance(purpose, str) or not (purpose == "*" or _PURPOSE.match(purpose)):
            raise InvalidParameter(
                "purposes", f"'purposes': {purpose!r} is not a purpose name (a-z, 0-9, _:.-) or \"*\"."
            )
    return frozenset(raw)


def _regions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidParameter("regions", "'regions' must be a non-empty list of GB/T 2260 division codes.")
    for region in raw:
        if not isinstance(region, str) or not _REGION.match(region):
            raise InvalidParameter("regions", f"'regions': {region!r} is not a 6-digit GB/T 2260 division code.")
        if region != ALL_REGIONS and int(region[:2]) not in PROVINCE_CODES:
            raise InvalidParameter("regions", f"'regions': {region} does not start with a province code.")
    return tuple(sorted(set(raw)))


def parse_licence(data: Any, *, licence_id: str, client_id: str) -> Licence:
    """Validate untrusted licence JSON; raise InvalidParameter naming the first bad field."""
    check_licence_id(licence_id)
    if not isinstance(data, Mapping):
        raise InvalidParameter("licence", "A licence must be a JSON object.")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidParameter(unknown[0], f"'{unknown[0]}' is not a licence field.")
    datasets = _datasets(_require(data, "datasets"))
    purposes = _purposes(_require(data, "purposes"))
    regions = _regions(_require(data, "regions"))
    not_before, not_after = _time(data, "not_before"), _time(data, "not_after")
    if not_after <= not_before:
        raise InvalidParameter("not_after", "'not_after' must be later than 'not_before'.")
    if not_after > plus_years(not_before, MAX_YEARS):
        raise InvalidParameter("not_after", f"'not_after' is more than {MAX_YEARS} years after 'not_before'.")
    status = data.get("status", "active")
    if status not in STATUSES:
        raise InvalidParameter("status", f"'status' must be one of {', '.join(STATUSES)}.")
    default_purpose = data.get("default_purpose")
    if default_purpose is not None and (
        not isinstance(default_purpose, str) or not _PURPOSE.match(default_purpose)
        or (default_purpose not in purposes and "*" not in purposes)
    ):
        raise InvalidParameter("default_purpose", "'default_purpose' must be one of the licence's purposes.")
    return Licence(
        licence_id=licence_id,
        client_id=client_id,
        datasets=datasets,
        purposes=purposes,
        regions=regions,
        not_before=not_before,
        not_after=not_after,
        quotas=_quotas(data.get("quotas")),
        status=status,
        default_purpose=default_purpose,
    )


def policy_rows(licence: Licence) -> list[list[str]]:
    """The Casbin `p` rows a licence grants: one per data set × purpose × region prefix."""
    return [
        [licence.client_id, dataset, purpose, region_prefix(region), licence.licence_id]
        for dataset in sorted(licence.datasets)
        for purpose in sorted(licence.purposes)
        for region in licence.regions
    ]
