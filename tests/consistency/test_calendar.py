"""PRC working days and grace deadlines around the 2025 National Day holiday."""

from __future__ import annotations

import datetime as dt

import pytest

from consistency.calendar import CalendarRangeError, deadline, is_working_day
from credcore.errors import ConfigError

D = dt.date


def test_adjusted_working_days_of_national_day_2025() -> None:
    """Sunday 28 September and Saturday 11 October 2025 are working days; 1-8 October are not."""
    assert is_working_day(D(2025, 9, 28)) and D(2025, 9, 28).weekday() == 6
    assert is_working_day(D(2025, 10, 11)) and D(2025, 10, 11).weekday() == 5
    assert not any(is_working_day(D(2025, 10, day)) for day in range(1, 9))
    assert not is_working_day(D(2025, 9, 27))  # an ordinary Saturday


@pytest.mark.parametrize(("due_off", "n", "expected"), [
    (D(2025, 9, 26), 3, D(2025, 9, 30)),   # Sun 28 (adjusted) counts: 28, 29, 30
    (D(2025, 9, 27), 1, D(2025, 9, 28)),   # the adjusted Sunday is the first working day
    (D(2025, 9, 29), 3, D(2025, 10, 10)),  # 30 Sep, then the holiday, then 9 and 10 Oct
    (D(2025, 9, 30), 3, D(2025, 10, 11)),  # 9, 10 and the adjusted Saturday 11 Oct
    (D(2025, 10, 3), 3, D(2025, 10, 11)),  # due off inside the holiday
    (D(2025, 10, 10), 2, D(2025, 10, 13)),  # 11 (adjusted Saturday), Mon 13
    (D(2025, 3, 7), 3, D(2025, 3, 12)),    # an ordinary week: Fri -> Wed
    (D(2025, 3, 7), 0, D(2025, 3, 7)),     # no grace: the due-off day itself
])
def test_deadline_counts_working_days(due_off: dt.date, n: int, expected: dt.date) -> None:
    """The deadline is the end of the Nth working day after the due-off day."""
    assert deadline(due_off, n) == expected


def test_dates_outside_the_calendar_are_a_clear_error() -> None:
    """A year the package has no schedule for raises a ConfigError naming the date."""
    with pytest.raises(CalendarRangeError, match="does not cover 2099-01-0") as caught:
        deadline(D(2098, 12, 31), 3)
    assert isinstance(caught.value, ConfigError)


def test_negative_grace_is_refused() -> None:
    """A negative grace period is a programming error."""
    with pytest.raises(ValueError):
        deadline(D(2025, 3, 7), -1)
