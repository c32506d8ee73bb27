"""Quota windows on China Standard Time calendar days and months, and the rate bucket."""

from __future__ import annotations

import datetime as dt

import pytest

from credcore.clock import CST
from policies.quota import TokenBucket, day_window, month_window, windows_at

UTC = dt.UTC


def test_day_window_turns_at_cst_midnight_not_utc() -> None:
    """15:59:59 UTC is 23:59:59 CST on the same day; a second later is the next CST day."""
    before = dt.datetime(2026, 11, 26, 15, 59, 59, tzinfo=UTC)
    after = before + dt.timedelta(seconds=1)
    assert day_window(before).key == "d:2026-11-26"
    assert day_window(after).key == "d:2026-11-27"
    assert day_window(before).retry_after(before) == 1
    assert day_window(before).resets_at == dt.datetime(2026, 11, 27, tzinfo=CST)


def test_day_window_of_utc_evening_is_next_cst_day() -> None:
    """At 20:00 UTC on 26 November it is already 27 November in China."""
    assert day_window(dt.datetime(2026, 11, 26, 20, 0, tzinfo=UTC)).key == "d:2026-11-27"


def test_month_window_31_january_into_february() -> None:
    """The last second of 31 January (CST) is January; the next is February, ending 1 March."""
    last = dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=CST)
    assert month_window(last).key == "m:2027-01"
    assert month_window(last).retry_after(last) == 1
    feb = month_window(last + dt.timedelta(seconds=1))
    assert feb.key == "m:2027-02"
    assert feb.resets_at == dt.datetime(2027, 3, 1, tzinfo=CST)


def test_leap_day() -> None:
    """29 February 2028 is its own day; February 2028 has 29 days; the day after is 1 March."""
    leap = dt.datetime(2028, 2, 29, 12, 0, tzinfo=CST)
    assert day_window(leap).key == "d:2028-02-29"
    assert day_window(leap).resets_at == dt.datetime(2028, 3, 1, tzinfo=CST)
    assert month_window(leap).resets_at - dt.datetime(2028, 2, 1, tzinfo=CST) == dt.timedelta(days=29)
    assert day_window(dt.datetime(2028, 2, 28, 16, 0, tzinfo=UTC)).key == "d:2028-02-29"


def test_december_into_january() -> None:
    """The month window of December resets at 1 January of the next year, CST."""
    window = month_window(dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC))  # 00:30 CST on 1 January 2027
    assert window.key == "m:2027-01"
    window = month_window(dt.datetime(2026, 12, 31, 15, 30, tzinfo=UTC))  # 23:30 CST on 31 December
    assert window.key == "m:2026-12"
    assert window.resets_at == dt.datetime(2027, 1, 1, tzinfo=CST)


def test_retry_after_counts_whole_seconds_up() -> None:
    """Retry-After is the seconds to the window's end, rounded up, at least 1."""
    now = dt.datetime(2026, 11, 26, 22, 0, 0, 500000, tzinfo=CST)
    assert day_window(now).retry_after(now) == 7200
    assert day_window(now).retry_after(dt.datetime(2026, 11, 27, 0, 0, tzinfo=CST)) == 1


def test_token_bucket_burst_then_rate() -> None:
    """A bucket admits its burst at once, then one request per 1/rate seconds."""
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)
    assert bucket.take(110.0) == 0.0  # refills, but never beyond the burst
    assert [bucket.take(110.0) for _ in range(3)][-1] > 0


@pytest.mark.parametrize("utc", [
    dt.datetime(2026, 11, 26, 15, 59, 59, tzinfo=UTC), dt.datetime(2026, 11, 26, 16, 0, 0, tzinfo=UTC),
    dt.datetime(2026, 12, 31, 16, 0, 0, tzinfo=UTC), dt.datetime(2027, 1, 31, 15, 0, 0, tzinfo=UTC),
])
def test_remembered_windows_are_the_windows_of_that_moment(utc: dt.datetime) -> None:
    """windows_at remembers per CST day, so it must agree with the pure functions at day edges,
    asked in any order."""
    for moment in (utc, utc - dt.timedelta(seconds=1), utc, utc + dt.timedelta(hours=7, minutes=59)):
        assert windows_at(moment) == (month_window(moment), day_window(moment))
