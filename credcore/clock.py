"""The injected clock. Code takes a `Clock` instead of calling `time` or `datetime` itself,
so tests pass a `FixedClock` and never monkeypatch."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol

CST = dt.timezone(dt.timedelta(hours=8), "CST")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""
        ...

    def time(self) -> float:
        """The current time in seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def time(self) -> float:
        return time.time()


class FixedClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: dt.datetime | str) -> None:
        if isinstance(start, str):
            start = dt.datetime.fromisoformat(start)
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        self._now = when


def rfc3339(when: dt.datetime) -> str:
    """RFC 3339 with a Z for UTC, microseconds kept (they order audit entries)."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def cst_date(when: dt.datetime) -> dt.date:
    """The China Standard Time calendar date of an instant."""
    return when.astimezone(CST).date()


system_clock = SystemClock()
