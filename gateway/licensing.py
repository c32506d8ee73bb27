"""The licence runtime of one gateway process: decisions, suspensions and quotas.

Rules:
1. Deny by default. An operator with no licence in force, a licence that does not parse, a
   data set, purpose or region no row grants: all refused. A decision's licence is checked
   against the clock again at the moment of the request, so a licence stops at `not_after`
   exactly, whatever the cache holds.
2. Every process converges within a second. The database's policy version is polled every
   `poll_interval` (< 1 s); a new version loads only the rows changed since the version this
   process applied (`LicenceStore.changes`), so a suspension or licence change costs one small
   query per process, also with 50,000 rows. Licences that start or end on their own (no change
   in the database) are picked up at the poll after their boundary.
3. Quotas are counted after the licence allowed the request (a refused request consumes none),
   month window first, then day window; a request refused by the day window gives its month
   unit back. The rate is a token bucket per licence in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import math
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from credcore.clock import Clock
from credcore.errors import CredgateError, Forbidden, OperatorSuspended, QuotaExceeded
from policies.catalogue import BULK_DATASETS
from policies.counters import LeasedCounter
from policies.decision import Decision, DecisionIndex
from policies.licence import Licence, policy_rows, region_prefix
from policies.quota import TokenBucket, windows_at
from policies.store import Changes, LicenceStore

log = logging.getLogger(__name__)
HOUSEKEEPING_EVERY = 600.0  # seconds between sweeps of ended quota windows


@dataclass(frozen=True)
class Grant:
    decision: Decision
    licence: Licence

    def fields(self, dataset: str) -> frozenset[str]:
        return self.licence.datasets.get(dataset, frozenset())

    @property
    def region_prefixes(self) -> tuple[str, ...]:
        return tuple(region_prefix(r) for r in self.licence.regions)


@dataclass
class ReloadStats:
    reloads: int = 0
    full_reloads: int = 0
    licences_read: int = 0  # licence rows read, over all reloads
    operators_recomputed: int = 0  # operators whose rows were rebuilt, over all reloads


class Licensing:
    def __init__(
        self, store: LicenceStore, counter: LeasedCounter, clock: Clock, *, poll_interval: float = 0.5
    ) -> None:
        self._store = store
        self._counter = counter
        self._clock = clock
        self._poll_interval = poll_interval
        self._stop = asyncio.Event()
        self._index = DecisionIndex()
        self._version = 0
        self._licences: dict[str, Licence] = {}  # every valid stored licence, any status
        self._by_operator: dict[str, set[str]] = {}
        self._suspended: frozenset[str] = frozenset()
        self._default_purposes: dict[str, str] = {}
        self._boundaries: list[tuple[dt.datetime, str]] = []  # (not_before / not_after, client_id)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._housekeeping_at = 0.0
        self.stats = ReloadStats()

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="licence-poll")

    async def close(self) -> None:
        # Stopped, not cancelled: a query cancelled half-way can leave its SQLite transaction
        # open, and the write lock it holds stalls every writer for the busy timeout.
        self._stop.set()
        if self._task is not None:
            await self._task
        await self._counter.close()

    @property
    def version(self) -> int:
        return self._version

    @property
    def index(self) -> DecisionIndex:
        return self._index

    # --- loading ---------------------------------------------------------------------------

    async def reload(self) -> None:
        """Apply what changed in the database since the version this process holds."""
        async with self._lock:
            self._apply(await self._store.changes(self._version))

    async def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._poll_interval)
            if self._stop.is_set():
                return
            try:
                await self.poll_once()
            except (SQLAlchemyError, OSError, CredgateError) as exc:  # keep the last snapshot; retry
                log.warning("licence reload failed: %s", exc)
            except Exception:  # a bug or a library's race must not end licence polling for good
                log.exception("licence reload failed unexpectedly; retried next tick")

    async def poll_once(self) -> None:
        if await self._store.version() != self._version:
            await self.reload()
        self._cross_boundaries(self._clock.now())
        if self._clock.time() - self._housekeeping_at >= HOUSEKEEPING_EVERY:
            self._housekeeping_at = self._clock.time()
            self._counter.drop_expired(self._clock.now())
            await self._counter.backend.purge(self._clock.now())

    def _apply(self, changes: Changes) -> None:
        affected: set[str] = set()
        if changes.full:
            affected.update(self._by_operator)
            old_licences, self._licences, self._by_operator = self._licences, {}, {}
            suspended: set[str] = set()
        else:
            old_licences = {}
            suspended = set(self._suspended)
        for row in changes.licences:
            old = self._licences.pop(row.licence_id, None) or old_licences.get(row.licence_id)
            if old is not None:
                self._by_operator.get(old.client_id, set()).discard(old.licence_id)
                affected.add(old.client_id)
            if row.licence is not None:
                self._licences[row.licence_id] = row.licence
                self._by_operator.setdefault(row.client_id, set()).add(row.licence_id)
                self._schedule(row.licence)
            affected.add(row.client_id)
            if old != row.licence:
                self._buckets.pop(row.licence_id, None)
                self._counter.forget(row.licence_id)
        for licence_id in set(old_licences) - {row.licence_id for row in changes.licences}:
            self._buckets.pop(licence_id, None)  # gone from the database
        for client_id, status in changes.operators:
            (suspended.add if status == "suspended" else suspended.discard)(client_id)
        self._suspended = frozenset(suspended)
        self._recompute(affected, changes.version)
        self.stats.reloads += 1
        self.stats.full_reloads += changes.full
        self.stats.licences_read += len(changes.licences)
        self.stats.operators_recomputed += len(affected)

    def _schedule(self, licence: Licence) -> None:
        now = self._clock.now()
        for boundary in (licence.not_before, licence.not_after):
            if boundary > now:
                heapq.heappush(self._boundaries, (boundary, licence.client_id))

    def _cross_boundaries(self, now: dt.datetime) -> None:
        due: set[str] = set()
        while self._boundaries and self._boundaries[0][0] <= now:
            due.add(heapq.heappop(self._boundaries)[1])
        if due:
            self._recompute(due, self._version)

    def _recompute(self, client_ids: set[str], version: int) -> None:
        """Rebuild the rows (and default purpose) of these operators from their licences in force."""
        now = self._clock.now()
        changed: dict[str, list[list[str]]] = {}
        for client_id in client_ids:
            ids = self._by_operator.get(client_id) or set()
            if not ids:
                self._by_operator.pop(client_id, None)
            in_force = [self._licences[i] for i in sorted(ids) if self._licences[i].in_force(now)]
            changed[client_id] = [row for lic in in_force for row in policy_rows(lic)]
            default = next((lic.default_purpose for lic in in_force if lic.default_purpose), None)
            if default is None:
                self._default_purposes.pop(client_id, None)
            else:
                self._default_purposes[client_id] = default
        self._index = self._index.replace(version, changed)
        self._version = version

    # --- decisions -------------------------------------------------------------------------

    def mark_suspended(self, client_id: str, suspended: bool) -> None:
        """Apply a suspension made by this process at once, before the next poll."""
        self._suspended = self._suspended | {client_id} if suspended else self._suspended - {client_id}

    def is_suspended(self, client_id: str) -> bool:
        return client_id in self._suspended

    def check_suspension(self, client_id: str) -> None:
        if client_id in self._suspended:
            raise OperatorSuspended("The operator is suspended; its requests are refused until it is resumed.")

    def default_purpose(self, client_id: str) -> str | None:
        """The purpose assumed when a request declares none, if the operator's licence names one."""
        return self._default_purposes.get(client_id)

    def licence(self, licence_id: str) -> Licence | None:
        return self._licences.get(licence_id)

    def authorize(self, client_id: str, dataset: str, purpose: str | None, region: str | None) -> Grant:
        if not purpose:
            raise Forbidden("No purpose was declared: send the X-Purpose header with a licensed purpose.")
        where = "*" if dataset in BULK_DATASETS or region is None else region
        decision = self._index.decide(client_id, dataset, purpose, where)
        if not decision.allowed or decision.licence_id is None:
            raise LicenceDenied(decision)
        licence = self._licences.get(decision.licence_id)
        if licence is None or not licence.in_force(self._clock.now()):
            # The licence ended (or changed) after the rows were built: deny, never fall back.
            raise LicenceDenied(Decision(False, None, f"the licence {decision.licence_id} is not in force"))
        return Grant(decision, licence)

    # --- quotas ----------------------------------------------------------------------------

    async def consume(self, licence: Licence) -> None:
        """Count one request against the licence's rate, month and day quotas, or raise QuotaExceeded."""
        now = self._clock.now()
        quotas = licence.quotas
        bucket = self._buckets.get(licence.licence_id)
        if bucket is None:
            bucket = TokenBucket(quotas.rate_per_second, quotas.burst, self._clock.time())
            self._buckets[licence.licence_id] = bucket
        wait = bucket.take(self._clock.time())
        if wait > 0:
            raise QuotaExceeded(
                f"The licence's rate of {quotas.rate_per_second:g} requests a second "
                f"(burst {quotas.burst}) is exceeded.",
                retry_after=math.ceil(wait),
            )
        taken: list[str] = []
        month, day = windows_at(now)
        for limit, window, label in ((quotas.per_month, month, "monthly"), (quotas.per_day, day, "daily")):
            if limit is None:
                continue
            key = f"{licence.licence_id}:{window.key}"
            if not (self._counter.take_leased(key) or await self._counter.try_consume(key, limit, window.resets_at)):
                for earlier in taken:
                    await self._counter.refund(earlier)
                raise QuotaExceeded(
                    f"The licence's {label} quota of {limit} requests is used up.",
                    retry_after=window.retry_after(now),
                )
            taken.append(key)


class LicenceDenied(Forbidden):
    """A licence decision refused the request; the decision goes into the audit entry."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason[0].upper() + decision.reason[1:] + ".")
        self.decision = decision
