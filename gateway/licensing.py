"""The licence runtime of one gateway process: decisions, suspensions and quotas.

It holds an immutable snapshot (decision index, licences by id, suspended operators) and
replaces it whenever the database's policy version moves; the version is polled every
`poll_interval` (< 1 s), so a licence change or a suspension made through any process bites
on every process within a second, with no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from credcore.clock import Clock
from credcore.errors import Forbidden, OperatorSuspended, QuotaExceeded
from policies.catalogue import BULK_DATASETS
from policies.counters import LeasedCounter
from policies.decision import Decision, DecisionIndex
from policies.licence import Licence, policy_rows, region_prefix
from policies.quota import TokenBucket, day_window, month_window
from policies.store import LicenceStore, Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    decision: Decision
    licence: Licence

    def fields(self, dataset: str) -> frozenset[str]:
        return self.licence.datasets.get(dataset, frozenset())

    @property
    def region_prefixes(self) -> tuple[str, ...]:
        return tuple(region_prefix(r) for r in self.licence.regions)


class Licensing:
    def __init__(self, store: LicenceStore, counter: LeasedCounter, clock: Clock, *, poll_interval: float = 0.5) -> None:
        self._store = store
        self._counter = counter
        self._clock = clock
        self._poll_interval = poll_interval
        self._index = DecisionIndex([])
        self._licences: dict[str, Licence] = {}
        self._suspended: frozenset[str] = frozenset()
        self._buckets: dict[str, TokenBucket] = {}
        self._default_purposes: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="licence-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def version(self) -> int:
        return self._index.version

    async def reload(self) -> None:
        self._apply(await self._store.snapshot())

    def _apply(self, snap: Snapshot) -> None:
        now = self._clock.now()
        in_force = [lic for lic in snap.licences if lic.in_force(now)]
        rows = [row for lic in in_force for row in policy_rows(lic)]
        self._index = DecisionIndex(rows, version=snap.version)
        old = self._licences
        self._licences = {lic.licence_id: lic for lic in in_force}
        for licence_id, lic in old.items():
            if self._licences.get(licence_id) != lic:
                self._buckets.pop(licence_id, None)
                self._counter.forget(licence_id + ":")
        self._suspended = snap.suspended
        defaults: dict[str, str] = {}
        for lic in sorted(in_force, key=lambda lic: lic.licence_id):
            if lic.default_purpose and lic.client_id not in defaults:
                defaults[lic.client_id] = lic.default_purpose
        self._default_purposes = defaults

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                if await self._store.version() != self._index.version:
                    await self.reload()
            except (SQLAlchemyError, OSError) as exc:  # keep the last snapshot; retry next tick
                log.warning("licence reload failed: %s", exc)

    def mark_suspended(self, client_id: str, suspended: bool) -> None:
        """Apply a suspension made by this process at once, before the next poll."""
        self._suspended = self._suspended | {client_id} if suspended else self._suspended - {client_id}

    def check_suspension(self, client_id: str) -> None:
        if client_id in self._suspended:
            raise OperatorSuspended("The operator is suspended; its requests are refused until it is resumed.")

    def default_purpose(self, client_id: str) -> str | None:
        """The purpose assumed when a request declares none, if the operator's licence names one."""
        return self._default_purposes.get(client_id)

    def authorize(self, client_id: str, dataset: str, purpose: str | None, region: str | None) -> Grant:
        if not purpose:
            raise Forbidden("No purpose was declared: send the X-Purpose header with a licensed purpose.")
        where = "*" if dataset in BULK_DATASETS or region is None else region
        decision = self._index.decide(client_id, dataset, purpose, where)
        if not decision.allowed or decision.licence_id not in self._licences:
            raise LicenceDenied(decision)
        return Grant(decision, self._licences[decision.licence_id])

    async def consume(self, licence: Licence) -> None:
        """Count one request against the licence's rate, day and month quotas."""
        now = self._clock.now()
        bucket = self._buckets.get(licence.licence_id)
        if bucket is None:
            bucket = self._buckets[licence.licence_id] = TokenBucket(
                licence.quotas.rate_per_second, licence.quotas.burst, self._clock.time()
            )
        wait = bucket.take(self._clock.time())
        if wait > 0:
            raise QuotaExceeded("The licence's request rate is exceeded.", retry_after=int(wait) + 1)
        for limit, window, label in (
            (licence.quotas.per_month, month_window(now), "monthly"),
            (licence.quotas.per_day, day_window(now), "daily"),
        ):
            if limit is None:
                continue
            if not await self._counter.try_consume(f"{licence.licence_id}:{window.key}", limit, window.resets_at):
                raise QuotaExceeded(
                    f"The licence's {label} quota of {limit} requests is used up.",
                    retry_after=window.retry_after(now),
                )


class LicenceDenied(Forbidden):
    """A licence decision refused the request; the decision goes into the audit entry."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason[0].upper() + decision.reason[1:] + ".")
        self.decision = decision
