"""Quota windows and the rate bucket: pure functions of an injected time.

Per-day and per-month quotas count China Standard Time calendar days and months; a refused
request is told when its window resets (`Retry-After`). The rate is a token bucket with a burst.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from credcore.clock import CST


@dataclass(frozen=True)
class Window:
    key: str  # the counter's name for this window, e.g. "d:2026-11-26" or "m:2026-11"
    resets_at: dt.datetime

    def retry_after(self, now: dt.datetime) -> int:
        return max(1, math.ceil((self.resets_at - now).total_seconds()))


def day_window(now: dt.datetime) -> Window:
    local = now.astimezone(CST)
    start = dt.datetime(local.year, local.month, local.day, tzinfo=CST)
    return Window(f"d:{local:%Y-%m-%d}", start + dt.timedelta(days=1))


def month_window(now: dt.datetime) -> Window:
    local = now.astimezone(CST)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return Window(f"m:{local:%Y-%m}", dt.datetime(year, month, 1, tzinfo=CST))


_WINDOWS: dict[tuple[int, int, int], tuple[Window, Window]] = {}


def windows_at(now: dt.datetime) -> tuple[Window, Window]:
    """(month_window(now), day_window(now)), computed once per CST calendar day."""
    local = now.astimezone(CST)
    day = (local.year, local.month, local.day)
    found = _WINDOWS.get(day)
    if found is None:
        if len(_WINDOWS) > 64:  # a long-running process keeps only recent days
            _WINDOWS.clear()
        found = _WINDOWS[day] = (month_window(now), day_window(now))
    return found


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `take` answers how long to wait."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
