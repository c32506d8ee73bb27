"""A region's side of the exchange, with no sockets: values in, values out (h11 style).

`Region` ties the inbox decision, the store, the outbox and the crosswalk together. The HTTP
layer calls `receive` for `POST /crosstab/v1/inbox`, `outbox_page` for `GET
/crosstab/v1/outbox` and `jwks` for `GET /crosstab/v1/jwks.json`; the sync command calls
`sync_from` and `push_to` with a function that does the HTTP request. Tests join two regions
by passing one region's `outbox_page` as the other's fetch function.

Why a cursor cannot lose or duplicate a record. A pull cursor moves only after every record of
the page has been judged and the accepted ones stored (each in its own transaction). If a fetch
fails, nothing moved; if we stop after storing half a page, the next sync fetches the same page
and the stored half comes back as identical re-sends, accepted and stored once. The push cursor
moves only after the partner answered for the whole page in the contract's shape. Records
refused on either side do not hold a cursor back: they would be refused again (the checks are
deterministic), so they are reported in the `SyncReport` for the audit log instead. The one
exception is a key rotation: a record signed under a kid the receiver does not hold yet would
be good once the new key is registered, so the sync stops in front of it (pulling, nothing from
it on is judged; pushing, pages never straddle a change of our kid) and fails until then.
Retries are the caller's policy (`RetryPolicy`: attempts and exponential backoff, sleep
injected), and only for transport failures and partner garbage (`transient`): a bug of ours
fails the sync at once instead of being retried silently.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from credcore.clock import Clock, cst_date
from crosstab.crosswalk import Crosswalk, packaged_crosswalk
from crosstab.errors import (
    PartnerGarbage,
    PartnerHTTPError,
    RecordRejected,
    Replay,
    StaleSeq,
    SyncFailed,
    UnknownKey,
)
from crosstab.inbox import InboxResult, Rejected, batch_jtis, check_batch, decide
from crosstab.outbox import (
    DEFAULT_PAGE,
    Draft,
    IssuedRecord,
    Outbox,
    OutboxPage,
    Signer,
    default_jti,
    page_limit,
)
from crosstab.recognitions import Recognition
from crosstab.records import MAX_BATCH, parse_record, peek_kid, peek_seq
from crosstab.store import CrosstabStore, Direction
from crosstab.trust import DomesticPolicy, Partner

T = TypeVar("T")
FetchPage = Callable[[int, int], Awaitable[Any]]  # (after, limit) -> {"records", "next"}
SendBatch = Callable[[list[str]], Awaitable[Any]]  # records -> {"accepted", "rejected"}
# Called once per page after its records were judged (and, pulling, stored) and before the
# cursor moves: if it raises (say, the audit log is down), the cursor stays and the page is
# exchanged again next time (idempotently), so nothing is exchanged without being recorded.
OnPage = Callable[["PageOutcome"], Awaitable[None]]


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: the network failed or timed out, or the partner
    answered garbage or a transient HTTP error. Anything else, say a TypeError or a plain
    ValueError from our own code, or a 403 from the partner, would fail the same way again,
    and retrying it would only hide it behind backoff, so it is raised at once."""
    if isinstance(exc, PartnerHTTPError):
        return exc.transient
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError | PartnerGarbage)


@dataclass(frozen=True)
class RetryPolicy:
    """Try an operation up to `attempts` times, sleeping base * factor**n (capped) between,
    as long as its failure is one that `retry_on` calls transient."""

    attempts: int = 5
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = _sleep
    retry_on: Callable[[BaseException], bool] = transient

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("retry policy: attempts >= 1, delays >= 0, factor >= 1")

    def delay(self, retry: int) -> float:
        """The pause before retry number `retry` (1 for the first retry)."""
        return float(min(self.max_delay, self.base_delay * self.factor ** (retry - 1)))

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Await `operation`, retrying transient failures (cancellation is never retried)."""
        for attempt in range(1, self.attempts):
            try:
                return await operation()
            except Exception as exc:
                if not self.retry_on(exc):
                    raise
                await self.sleep(self.delay(attempt))
        return await operation()  # the last attempt's error is the caller's


@dataclass
class SyncReport:
    """How far one sync with a partner got, and what was refused on either side."""

    partner: str
    direction: Direction
    cursor_before: int
    cursor_after: int
    pages: int = 0
    accepted: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    complete: bool = False
    error: str | None = None


@dataclass(frozen=True)
class PageOutcome:
    """One page of a sync: the records exchanged and what became of each."""

    partner: str
    direction: Direction
    records: list[str]
    accepted: list[str]
    rejected: list[Rejected]
    cursor_before: int
    cursor_after: int


def parse_outbox_page(body: Any, after: int, limit: int) -> OutboxPage:
    """A partner's outbox answer, or PartnerGarbage: garbage must not move the cursor."""
    if not isinstance(body, Mapping) or "records" not in body or "next" not in body:
        raise PartnerGarbage('the outbox answer is not {"records", "next"}')
    records, nxt = body["records"], body["next"]
    if not isinstance(records, list) or len(records) > limit:
        raise PartnerGarbage(f"records is not a list of at most {limit}")
    if isinstance(nxt, bool) or not isinstance(nxt, int) or nxt < after:
        raise PartnerGarbage(f"next is not an integer of at least {after}")
    if records and nxt == after:
        raise PartnerGarbage("next does not advance past the records served")
    return OutboxPage(records=records, next=nxt)


def parse_inbox_answer(body: Any, sent: int) -> tuple[list[str], list[Rejected]]:
    """A partner's inbox answer, or PartnerGarbage; every record sent must be answered for."""
    if not isinstance(body, Mapping):
        raise PartnerGarbage("the inbox answer is not a JSON object")
    accepted, rejected = body.get("accepted"), body.get("rejected")
    if not isinstance(accepted, list) or not all(isinstance(j, str) for j in accepted):
        raise PartnerGarbage("accepted is not a list of jtis")
    if not isinstance(rejected, list):
        raise PartnerGarbage("rejected is not a list")
    out = []
    for item in rejected:
        if not isinstance(item, Mapping) or type(item.get("index")) is not int:
            raise PartnerGarbage("a rejected entry has no index")
        jti = item.get("jti")
        out.append(
            Rejected(
                item["index"],
                jti if isinstance(jti, str) else None,
                str(item.get("error")),
                str(item.get("error_description")),
            )
        )
    if len(accepted) + len(out) != sent:
        raise PartnerGarbage(f"the answer covers {len(accepted) + len(out)} of {sent} records")
    return accepted, out


def _unknown_key_at(partner: Partner, records: Sequence[object]) -> int | None:
    """The index of the first record that is the partner's own, of an allowed type, but signed
    under a kid we do not hold as valid: refusing it would be final, registering the partner's
    new key would make it good, so a sync stops in front of it instead (see `sync_from`)."""
    for index, item in enumerate(records):
        try:
            parsed = parse_record(item)
        except RecordRejected:
            continue
        record = parsed.record
        if (
            record.iss == partner.region
            and partner.allows(record.type)
            and partner.key_for(parsed.kid, record.iat) is None
        ):
            return index
    return None


def _same_kid_prefix(records: list[str]) -> list[str]:
    """The leading records signed under one kid: a push page never straddles our key rotation."""
    first = peek_kid(records[0]) if records else None
    for index, item in enumerate(records):
        if peek_kid(item) != first:
            return records[:index]
    return records


class Region:
    """One region's exchange: inbox, outbox, sync, keys. Holds no connection of its own."""

    def __init__(
        self,
        *,
        store: CrosstabStore,
        signer: Signer,
        clock: Clock,
        crosswalk: Crosswalk | None = None,
        domestic: DomesticPolicy | None = None,
        new_jti: Callable[[], str] = default_jti,
        published_keys: Sequence[Mapping[str, Any]] = (),
        max_batch: int = MAX_BATCH,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch is 1 to {MAX_BATCH}")
        self.max_batch = max_batch
        self.store = store
        self.signer = signer
        self.clock = clock
        self.crosswalk = crosswalk if crosswalk is not None else packaged_crosswalk()
        self.domestic = domestic if domestic is not None else DomesticPolicy()
        self.outbox = Outbox(store, signer, clock, domestic=self.domestic, new_jti=new_jti)
        # Retired public keys stay published so partners can re-verify older records.
        self.published_keys = [dict(k) for k in published_keys]

    @property
    def code(self) -> str:
        return self.signer.region

    def jwks(self) -> dict[str, Any]:
        """The document for `GET /crosstab/v1/jwks.json`."""
        current = self.signer.public_jwk()
        retired = [k for k in self.published_keys if k.get("kid") != current["kid"]]
        return {"keys": [current, *retired]}

    def rotate_key(self, signer: Signer) -> None:
        """Sign from now on with a new key; the old public key stays in jwks.json."""
        if signer.region != self.code:
            raise ValueError("a region rotates only its own key")
        old = self.signer.public_jwk()
        kept = [k for k in self.published_keys if k.get("kid") not in (old["kid"], signer.kid)]
        self.published_keys = [old, *kept]
        self.signer = signer
        self.outbox.signer = signer

    async def add_partner(self, partner: Partner) -> None:
        await self.store.save_partner(partner)

    async def remove_partner(self, region: str) -> bool:
        return await self.store.remove_partner(region)

    async def receive(self, partner_region: str, batch: object) -> InboxResult:
        """Judge and store a batch pushed (or pulled) from an authenticated partner."""
        partner = await self.store.get_partner(partner_region)
        records = check_batch(batch, self.max_batch)
        state = await self.store.inbox_state(partner.region, batch_jtis(records))
        now = self.clock.now()
        result = decide(
            partner, records, state, now=now, crosswalk=self.crosswalk, max_batch=self.max_batch
        )
        for accepted in result.to_store:
            try:
                await self.store.accept(accepted, now)
            except (Replay, StaleSeq) as err:  # another request got there first
                result.reject(accepted.index, err)
        return result

    async def issue(self, draft: Draft, jti: str | None = None) -> IssuedRecord:
        return await self.outbox.issue(draft, jti)

    async def outbox_page(
        self, partner_region: str, after: int, limit: int | None = None
    ) -> OutboxPage:
        """Our records for a partner (domestic-only ones only if it is domestic)."""
        partner = await self.store.get_partner(partner_region)
        return await self.outbox.page(partner, after, limit)

    async def recognitions(self, uscc: str) -> list[Recognition]:
        return await self.store.recognitions(uscc)

    def today(self) -> dt.date:
        """Today in China Standard Time, by the injected clock."""
        return cst_date(self.clock.now())

    async def _fail(self, report: SyncReport, exc: BaseException) -> SyncFailed:
        report.error = f"{type(exc).__name__}: {exc}"
        await self.store.set_cursor(
            report.partner, report.direction, report.cursor_after, self.clock.now(), report.error
        )
        what = "outbox" if report.direction == "pull" else "inbox"
        return SyncFailed(
            f"Region {report.partner}'s {what} failed after seq {report.cursor_after}: "
            f"{report.error}",
            report=report,
        )

    async def sync_from(
        self,
        partner_region: str,
        fetch_page: FetchPage,
        *,
        retry: RetryPolicy | None = None,
        limit: int = DEFAULT_PAGE,
        max_pages: int = 1000,
        on_page: OnPage | None = None,
    ) -> SyncReport:
        """Pull a partner's outbox from our cursor until it is empty (or max_pages)."""
        retry = retry or RetryPolicy()
        limit = min(page_limit(limit), self.max_batch)  # a page is at most one inbox batch
        partner = await self.store.get_partner(partner_region)
        cursor = await self.store.get_cursor(partner.region, "pull")
        report = SyncReport(partner.region, "pull", cursor, cursor)

        async def fetch() -> OutboxPage:
            return parse_outbox_page(await fetch_page(cursor, limit), cursor, limit)

        for _ in range(max_pages):
            try:
                page = await retry.run(fetch)
            except Exception as exc:
                raise await self._fail(report, exc) from exc
            held = _unknown_key_at(partner, page.records)
            if held is not None:
                # SECURITY/no loss: a record under a key we do not know yet is not refused for
                # good. Nothing from it on is judged (a later seq accepted now would make it
                # stale forever); the cursor stops in front of it and the sync fails loudly
                # until the partner's new key is registered.
                seq = peek_seq(page.records[held])
                stop = max(cursor, (seq - 1) if seq is not None else cursor)
                page = OutboxPage(records=page.records[:held], next=min(page.next, stop))
            if page.records:
                result = await self.receive(partner.region, page.records)
                if on_page is not None:
                    outcome = PageOutcome(
                        partner.region, "pull", page.records, result.accepted, result.rejected,
                        cursor, page.next,
                    )
                    try:
                        await on_page(outcome)
                    except Exception as exc:
                        raise await self._fail(report, exc) from exc
                report.accepted.extend(result.accepted)
                report.rejected.extend(result.rejected)
                report.pages += 1
            cursor = report.cursor_after = page.next
            if held is not None:
                raise await self._fail(report, UnknownKey(
                    f"Region {partner.region} signs with a key we do not have; register its new key "
                    f"(re-register the partner with its current JWKS) and sync again."
                ))
            await self.store.set_cursor(partner.region, "pull", cursor, self.clock.now(), None)
            if not page.records:
                report.complete = True
                break
        return report

    async def push_to(
        self,
        partner_region: str,
        send_batch: SendBatch,
        *,
        retry: RetryPolicy | None = None,
        limit: int = DEFAULT_PAGE,
        max_pages: int = 1000,
        on_page: OnPage | None = None,
    ) -> SyncReport:
        """Push our outbox to a partner's inbox from our push cursor until nothing is left."""
        retry = retry or RetryPolicy()
        limit = min(page_limit(limit), self.max_batch)
        partner = await self.store.get_partner(partner_region)
        cursor = await self.store.get_cursor(partner.region, "push")
        report = SyncReport(partner.region, "push", cursor, cursor)
        for _ in range(max_pages):
            page = await self.outbox.page(partner, cursor, limit)
            if not page.records:
                report.complete = True
                break
            same = _same_kid_prefix(page.records)
            if len(same) < len(page.records):
                page = OutboxPage(records=same, next=peek_seq(same[-1]) or page.next)

            async def send(records: list[str] = page.records) -> tuple[list[str], list[Rejected]]:
                return parse_inbox_answer(await send_batch(records), len(records))

            try:
                accepted, rejected = await retry.run(send)
            except Exception as exc:
                raise await self._fail(report, exc) from exc
            if on_page is not None:
                outcome = PageOutcome(
                    partner.region, "push", page.records, accepted, rejected, cursor, page.next
                )
                try:
                    await on_page(outcome)
                except Exception as exc:
                    raise await self._fail(report, exc) from exc
            report.accepted.extend(accepted)
            report.rejected.extend(rejected)
            report.pages += 1
            unknown = [r.index for r in rejected if r.error == UnknownKey.code and 0 <= r.index < len(page.records)]
            if unknown:
                # The partner lacks our (new) key: the page is one kid, so nothing of it was
                # kept there; hold the cursor in front of it until our key is registered.
                seq = peek_seq(page.records[min(unknown)])
                report.cursor_after = max(cursor, (seq - 1) if seq is not None else cursor)
                raise await self._fail(report, UnknownKey(
                    f"Region {partner.region} does not know our signing key; it must register our "
                    f"current JWKS before we push again."
                ))
            cursor = report.cursor_after = page.next
            await self.store.set_cursor(partner.region, "push", cursor, self.clock.now(), None)
        return report
