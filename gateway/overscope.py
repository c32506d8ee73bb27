"""Over-scope detection and the emergency brake.

An access observer (Services.access_observers) sees every /v1 answer. Per operator, over a
sliding window of `overscope.window` seconds (injected clock), it counts:

| signal                      | counted                                              | trips past                |
|-----------------------------|------------------------------------------------------|---------------------------|
| scope_violations            | 403 insufficient_scope answers (data set, purpose,   | max_scope_denials         |
|                             | region or token scope outside the licence)           |                           |
| enumeration_not_found       | 404 answers to a lookup of a well-formed code        | max_not_found             |
| enumeration_distinct_codes  | distinct codes looked up                             | max_distinct_codes        |
| enumeration_sequential      | lookups of a code whose organization code lies within| max_sequential            |
|                             | sequential_gap of one already seen (same first 8)    |                           |

A signal past its threshold suspends the operator through the admin suspension itself
(`gateway.admin.set_suspended`: audited, tokens revoked, every process within a second) and
records an incident saying why (`GET /admin/incidents`). Observers are synchronous, so the
suspension runs as a task that the guard keeps (and awaits on shutdown). Windows are per
process: behind a load balancer each process sees its share of an operator's traffic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from credcore.clock import Clock
from credcore.errors import CredgateError
from gateway.admin import AdminContext, set_suspended
from gateway.config import OverscopeSettings
from gateway.release import AccessRecord
from gateway.services import Services

log = logging.getLogger(__name__)
ACTOR = "credgate-overscope"


@dataclass(frozen=True)
class Thresholds:
    window: float = 60.0
    max_scope_denials: int = 30
    max_not_found: int = 100
    max_distinct_codes: int = 2000
    max_sequential: int = 20
    sequential_gap: int = 2

    @classmethod
    def of(cls, settings: OverscopeSettings) -> Thresholds:
        return cls(
            window=settings.window, max_scope_denials=settings.max_scope_denials,
            max_not_found=settings.max_not_found, max_distinct_codes=settings.max_distinct_codes,
            max_sequential=settings.max_sequential, sequential_gap=settings.sequential_gap,
        )


@dataclass(frozen=True)
class Trip:
    kind: str
    reason: str
    detail: dict[str, Any]


def _sequence_keys(code: str) -> tuple[tuple[str, int], ...]:
    """Where a code sits in the orders an enumerator would walk: its organization code body
    (positions 9-16) read in base 36 (0-9 then A-Z) and, when all digits, in base 10; keyed by
    the first 8 positions (registration authority, entity type, division)."""
    body = code[8:16]
    try:
        keys = [(code[:8] + "/36", int(body, 36))]
    except ValueError:
        return ()
    if body.isdigit():
        keys.append((code[:8] + "/10", int(body)))
    return tuple(keys)


@dataclass
class _Track:
    denials: deque[float] = field(default_factory=deque)
    not_found: deque[float] = field(default_factory=deque)
    sequential: deque[float] = field(default_factory=deque)
    codes: OrderedDict[str, float] = field(default_factory=OrderedDict)  # code → last seen, oldest first
    keys: set[tuple[str, int]] = field(default_factory=set)  # sequence keys of `codes`

    def prune(self, horizon: float) -> None:
        for times in (self.denials, self.not_found, self.sequential):
            while times and times[0] <= horizon:
                times.popleft()
        while self.codes:
            code, seen = next(iter(self.codes.items()))
            if seen > horizon:
                break
            del self.codes[code]
            self.keys.difference_update(_sequence_keys(code))

    @property
    def empty(self) -> bool:
        return not (self.denials or self.not_found or self.sequential or self.codes)


class Detector:
    """Pure sliding-window counting per operator; `observe` answers a Trip when a threshold is passed."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._tracks: dict[str, _Track] = {}

    def forget(self, client_id: str) -> None:
        self._tracks.pop(client_id, None)

    def observe(
        self, client_id: str, *, status: int, scope_denied: bool, codes: Iterable[str], now: float
    ) -> Trip | None:
        t = self.thresholds
        track = self._tracks.get(client_id)
        if track is None:
            track = self._tracks[client_id] = _Track()
        track.prune(now - t.window)
        codes = list(codes)
        if scope_denied:
            track.denials.append(now)
        if status == 404 and codes:
            track.not_found.append(now)
        for code in codes:
            self._see(track, code, now)
        trip = self._check(track, codes)
        if trip is not None or track.empty:
            self.forget(client_id)
        return trip

    def _see(self, track: _Track, code: str, now: float) -> None:
        if code in track.codes:
            track.codes.move_to_end(code)
            track.codes[code] = now
            return
        track.codes[code] = now
        keys = _sequence_keys(code)
        gap = self.thresholds.sequential_gap
        if any((prefix, body + d) in track.keys or (prefix, body - d) in track.keys
               for prefix, body in keys for d in range(1, gap + 1)):
            track.sequential.append(now)
        track.keys.update(keys)

    def _check(self, track: _Track, codes: list[str]) -> Trip | None:
        t = self.thresholds
        counts = (len(track.denials), len(track.not_found), len(track.sequential), len(track.codes))
        limits = (t.max_scope_denials, t.max_not_found, t.max_sequential, t.max_distinct_codes)
        if all(count <= limit for count, limit in zip(counts, limits, strict=True)):
            return None  # the common case, decided before any text is built
        window = f"{t.window:g} s"
        checks = (
            ("scope_violations", counts[0], limits[0], "requests outside its licence (403 insufficient_scope)"),
            ("enumeration_not_found", counts[1], limits[1], "lookups of unknown codes (404)"),
            ("enumeration_sequential", counts[2], limits[2],
             f"lookups of codes within {t.sequential_gap} of one already looked up"),
            ("enumeration_distinct_codes", counts[3], limits[3], "distinct codes looked up"),
        )
        for kind, count, limit, what in checks:
            if count > limit:
                reason = f"automatic suspension: {count} {what} within {window} (threshold {limit})"
                detail = {"count": count, "threshold": limit, "window_seconds": t.window,
                          "recent_codes": list(track.codes)[-10:] or codes[-10:]}
                return Trip(kind, reason, detail)
        return None


class OverscopeGuard:
    """The access observer: feeds the detector and suspends operators that trip it."""

    def __init__(self, gw: Services, settings: OverscopeSettings, *, clock: Clock | None = None) -> None:
        self._gw = gw
        self._clock = clock or gw.clock
        self.enabled = settings.enabled
        self.detector = Detector(Thresholds.of(settings))
        self._pending: set[str] = set()  # operators whose suspension is under way
        self._tasks: set[asyncio.Task[None]] = set()

    def observe(self, record: AccessRecord, status: int) -> None:
        """Count one answered /v1 request; never raises (a broken observer must not break answers)."""
        try:
            self._observe(record, status)
        except Exception:  # noqa: BLE001 - logged; the request was already answered
            log.exception("over-scope observer failed")

    def _observe(self, record: AccessRecord, status: int) -> None:
        client_id = record.client_id
        if not self.enabled or client_id is None or client_id in self._pending:
            return
        if self._gw.licensing.is_suspended(client_id):
            return
        trip = self.detector.observe(
            client_id, status=status, scope_denied=status == 403 and record.decision == "deny",
            codes=record.uscc, now=self._clock.time(),
        )
        if trip is not None:
            self._pending.add(client_id)
            task = asyncio.get_running_loop().create_task(self._respond(client_id, trip), name=f"overscope-{client_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _respond(self, client_id: str, trip: Trip) -> None:
        ctx = AdminContext.of(self._gw)
        index: int | None = None
        action = "suspended"
        try:
            index = await set_suspended(ctx, client_id, True, trip.reason, actor=ACTOR,
                                        details={"incident": trip.kind, **trip.detail})
        except (CredgateError, SQLAlchemyError, OSError) as exc:
            action = "suspend_failed"
            log.error("automatic suspension of %s failed: %s", client_id, exc)
        try:
            await ctx.store.record_incident(client_id, kind=trip.kind, reason=trip.reason, detail=dict(trip.detail),
                                            action=action, audit_index=index, now=self._clock.now())
        except (SQLAlchemyError, OSError) as exc:
            log.error("incident of %s not recorded: %s (%s)", client_id, trip.reason, exc)
        finally:
            self._pending.discard(client_id)
            self.detector.forget(client_id)

    async def close(self) -> None:
        """Let suspensions under way finish (they are audited and must not be cut in half)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def install(gw: Services) -> OverscopeGuard:
    """Make the guard for this process and register it as an access observer."""
    guard = OverscopeGuard(gw, gw.settings.overscope)
    gw.access_observers.append(guard.observe)
    return guard
