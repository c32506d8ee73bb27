"""PRC working days, from the official holiday calendar as the chinese-calendar package ships it.

A working day is a weekday that is not a statutory holiday, or a weekend day that the State
Council's schedule makes an adjusted working day (调休上班, e.g. Sunday 28 September and
Saturday 11 October 2025 around the National Day holiday of 1-8 October). The package covers
only the years whose schedule has been published; outside them we refuse with a clear error
rather than guess, because a guessed deadline could wrongly clear or accuse an agency.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import chinese_calendar

from credcore.errors import ConfigError

_ONE_DAY = dt.timedelta(days=1)


class CalendarRangeError(ConfigError):
    """A date outside the years the installed holiday calendar covers."""

    code = "calendar_range"


def _package_version() -> str:
    return str(getattr(chinese_calendar, "__version__", "unknown"))


def is_working_day(day: dt.date) -> bool:
    """True on a PRC working day (adjusted working days included, statutory holidays excluded)."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError as exc:
        raise CalendarRangeError(
            f"the PRC holiday calendar (chinese-calendar {_package_version()}) does not cover "
            f"{day.isoformat()}: {exc}; upgrade chinese-calendar once the State Council has "
            "published that year's schedule"
        ) from None


@lru_cache(maxsize=65_536)
def deadline(due_off: dt.date, working_days: int) -> dt.date:
    """The day by whose end an agency must stop showing a record that became due off on
    `due_off`: the Nth working day after it (N = 0: the due-off day itself)."""
    if working_days < 0:
        raise ValueError("the grace period cannot be negative")
    day = due_off
    remaining = working_days
    while remaining:
        day += _ONE_DAY
        if is_working_day(day):
            remaining -= 1
    return day
