"""The licence model: parsing untrusted JSON, the 400 naming each bad field, and policy rows."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from credcore.clock import CST
from credcore.errors import InvalidParameter
from policies.catalogue import DATASETS
from policies.licence import parse_licence, plus_years, policy_rows, region_prefix

GOOD: dict[str, Any] = {
    "datasets": {"penalties": ["uscc", "fine_amount"], "entities": "*"},
    "purposes": ["credit_check", "risk_control"],
    "default_purpose": "credit_check",
    "regions": ["310000", "110105"],
    "not_before": "2026-01-01T00:00:00+08:00",
    "not_after": "2031-01-01T00:00:00+08:00",
    "quotas": {"rate_per_second": 5, "burst": 10, "per_day": 50, "per_month": 1000, "page_size_max": 20},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = body
    for name in parents:
        target = target[name]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return body


def test_good_licence_parses_with_every_term() -> None:
    """A complete licence keeps its data sets, fields, purposes, regions, window and quotas."""
    lic = parse_licence(GOOD, licence_id="L-1", client_id="op")
    assert lic.datasets["penalties"] == frozenset({"uscc", "fine_amount"})
    assert lic.datasets["entities"] == DATASETS["entities"]
    assert lic.purposes == {"credit_check", "risk_control"}
    assert lic.regions == ("110105", "310000")
    assert lic.quotas.per_day == 50 and lic.quotas.per_month == 1000 and lic.quotas.page_size_max == 20
    assert lic.status == "active"


def test_terms_round_trip() -> None:
    """`terms()` is read back by `parse_licence` into the same licence."""
    lic = parse_licence(GOOD, licence_id="L-1", client_id="op")
    assert parse_licence(lic.terms(), licence_id="L-1", client_id="op") == lic


BAD = [
    ("unknown data set", with_change("datasets.credit_scores", "*"), "datasets.credit_scores"),
    ("unknown field", with_change("datasets.penalties", ["uscc", "id_number"]), "datasets.penalties"),
    ("empty field list", with_change("datasets.penalties", []), "datasets.penalties"),
    ("no data sets", with_change("datasets", {}), "datasets"),
    ("inverted window", with_change("not_after", "2025-12-31T00:00:00+08:00"), "not_after"),
    ("empty window", with_change("not_after", "2026-01-01T00:00:00+08:00"), "not_after"),
    ("over five years", with_change("not_after", "2031-01-01T00:00:01+08:00"), "not_after"),
    ("naive time", with_change("not_before", "2026-01-01T00:00:00"), "not_before"),
    ("not a time", with_change("not_before", "next week"), "not_before"),
    ("negative day quota", with_change("quotas.per_day", -1), "quotas.per_day"),
    ("negative month quota", with_change("quotas.per_month", -5), "quotas.per_month"),
    ("zero burst", with_change("quotas.burst", 0), "quotas.burst"),
    ("negative rate", with_change("quotas.rate_per_second", -1), "quotas.rate_per_second"),
    ("infinite rate", with_change("quotas.rate_per_second", float("inf")), "quotas.rate_per_second"),
    ("NaN rate", with_change("quotas.rate_per_second", float("nan")), "quotas.rate_per_second"),
    ("fractional quota", with_change("quotas.per_day", 1.5), "quotas.per_day"),
    ("boolean quota", with_change("quotas.per_day", True), "quotas.per_day"),
    ("page over cap", with_change("quotas.page_size_max", 5000), "quotas.page_size_max"),
    ("unknown quota", with_change("quotas.per_hour", 5), "quotas.per_hour"),
    ("five-digit region", with_change("regions", ["31000"]), "regions"),
    ("letters in region", with_change("regions", ["31A000"]), "regions"),
    ("no such province", with_change("regions", ["990000"]), "regions"),
    ("region not a string", with_change("regions", [310000]), "regions"),
    ("no regions", with_change("regions", []), "regions"),
    ("bad purpose", with_change("purposes", ["Credit Check"]), "purposes"),
    ("no purposes", with_change("purposes", []), "purposes"),
    ("default purpose not licensed", with_change("default_purpose", "marketing"), "default_purpose"),
    ("unknown status", with_change("status", "paused"), "status"),
    ("unknown member", with_change("comment", "x"), "comment"),
    ("missing regions", with_change("regions", KeyError), "regions"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD, ids=[case for case, _, _ in BAD])
def test_bad_licence_names_the_field(case: str, body: dict[str, Any], field: str) -> None:
    """Each kind of bad licence is refused with an error naming the offending field."""
    with pytest.raises(InvalidParameter) as info:
        parse_licence(body, licence_id="L-1", client_id="op")
    assert info.value.parameter == field
    assert field in info.value.description
    assert info.value.status == 400


def test_not_an_object() -> None:
    """A licence that is not a JSON object is refused as a whole."""
    with pytest.raises(InvalidParameter) as info:
        parse_licence(["datasets"], licence_id="L-1", client_id="op")
    assert info.value.parameter == "licence"


def test_bad_licence_id() -> None:
    """A licence id that could not sit in a URL path or a counter key is refused."""
    with pytest.raises(InvalidParameter) as info:
        parse_licence(GOOD, licence_id="a/b:c", client_id="op")
    assert info.value.parameter == "licence_id"


def test_five_years_counted_on_the_calendar() -> None:
    """Exactly five calendar years is allowed, from a leap day to 28 February too."""
    parse_licence(with_change("not_after", "2031-01-01T00:00:00+08:00"), licence_id="L", client_id="op")
    leap = {**GOOD, "not_before": "2028-02-29T00:00:00+08:00", "not_after": "2033-02-28T00:00:00+08:00"}
    parse_licence(leap, licence_id="L", client_id="op")
    assert plus_years(dt.datetime(2028, 2, 29, tzinfo=CST), 5) == dt.datetime(2033, 2, 28, tzinfo=CST)
    with pytest.raises(InvalidParameter):
        parse_licence({**leap, "not_after": "2033-03-01T00:00:00+08:00"}, licence_id="L", client_id="op")


def test_expired_status_is_derived_from_the_window() -> None:
    """An active licence reads as expired once not_after has passed, and is no longer in force."""
    lic = parse_licence(GOOD, licence_id="L-1", client_id="op")
    after = dt.datetime(2031, 1, 1, tzinfo=CST)
    assert lic.in_force(after - dt.timedelta(seconds=1))
    assert not lic.in_force(after)
    assert lic.effective_status(after) == "expired"
    assert not lic.in_force(dt.datetime(2025, 12, 31, 23, 59, tzinfo=CST))


@pytest.mark.parametrize(("division", "prefix"), [
    ("310000", "31"), ("310100", "3101"), ("310115", "310115"), ("000000", "*"), ("110105", "110105"),
])
def test_region_prefix(division: str, prefix: str) -> None:
    """A GB/T 2260 division becomes the prefix that its subordinate divisions start with."""
    assert region_prefix(division) == prefix


def test_policy_rows_cover_dataset_purpose_region() -> None:
    """One row per data set, purpose and region, each naming the licence."""
    rows = policy_rows(parse_licence(GOOD, licence_id="L-1", client_id="op"))
    assert len(rows) == 2 * 2 * 2
    assert ["op", "penalties", "credit_check", "31", "L-1"] in rows
    assert ["op", "entities", "risk_control", "110105", "L-1"] in rows
