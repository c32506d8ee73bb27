"""Sync with a partner that fails: halfway, with garbage, slowly; cursors neither lose nor
duplicate a record; only transport failures and partner garbage are retried."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from crosstab import tables
from crosstab.errors import PartnerGarbage, PartnerHTTPError, SyncFailed
from crosstab.exchange import Region, transient

SH, JS = "310000", "320000"


async def test_fetch_failing_halfway_then_resuming_loses_and_duplicates_nothing(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """A sync that dies on page 2 keeps its cursor after page 1; the next sync finishes exactly."""
    sh, js = pair
    jtis = await kit.issue_tax_grades(sh, 7)
    fetch = kit.puller(sh, JS)
    calls: list[int] = []

    async def flaky(after: int, limit: int) -> Any:
        calls.append(after)
        if after >= 3:
            raise ConnectionResetError("partner went away")
        return await fetch(after, limit)

    retry, sleeps = kit.retry(attempts=4)
    with pytest.raises(SyncFailed) as info:
        await js.sync_from(SH, flaky, retry=retry, limit=3)
    assert info.value.report is not None
    assert (info.value.report.accepted, info.value.report.cursor_after) == (jtis[:3], 3)
    assert sleeps.delays == [0.5, 1.0, 2.0]  # exponential backoff between 4 attempts
    assert calls == [0, 3, 3, 3, 3]
    assert await js.store.get_cursor(SH, "pull") == 3

    resumed = await js.sync_from(SH, fetch, limit=3)
    assert resumed.accepted == jtis[3:]
    assert await kit.stored(js) == jtis


async def test_crash_after_storing_half_a_page_is_repaired_by_the_next_sync(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """Records stored before the cursor moved come back as re-sends and are stored once."""
    sh, js = pair
    jtis = await kit.issue_tax_grades(sh, 4)
    page = await sh.outbox_page(JS, 0, 4)
    await js.receive(SH, page.records[:2])  # stored, then the process "died": cursor still 0
    report = await js.sync_from(SH, kit.puller(sh, JS))
    assert report.accepted == jtis and report.rejected == []
    assert await kit.stored(js) == jtis


async def test_transient_failure_is_retried(pair: tuple[Region, Region], kit: Any) -> None:
    """A timeout once is retried after the base delay and the sync completes."""
    sh, js = pair
    jtis = await kit.issue_tax_grades(sh, 2)
    fetch = kit.puller(sh, JS)
    failures = [TimeoutError("slow partner")]

    async def slow_once(after: int, limit: int) -> Any:
        if failures:
            raise failures.pop()
        return await fetch(after, limit)

    retry, sleeps = kit.retry()
    report = await js.sync_from(SH, slow_once, retry=retry)
    assert (report.accepted, report.complete, sleeps.delays) == (jtis, True, [0.5])


@pytest.mark.parametrize(
    "answer",
    [
        "<html>502 Bad Gateway</html>",
        None,
        {"records": "all of them", "next": 1},
        {"records": [], "next": -1},
        {"records": [], "next": "1"},
        {"records": ["x"], "next": 0},
        {"records": ["x"] * 101, "next": 200},
        {"next": 1},
    ],
    ids=[
        "html",
        "null",
        "records-str",
        "next-negative",
        "next-str",
        "next-stuck",
        "too-many",
        "no-records",
    ],
)
async def test_garbage_outbox_answer_fails_without_moving_the_cursor(
    pair: tuple[Region, Region], kit: Any, answer: Any
) -> None:
    """A partner answering garbage fails the sync after retries; the cursor stays put."""
    _, js = pair

    async def garbage(after: int, limit: int) -> Any:
        return answer

    retry, sleeps = kit.retry(attempts=3)
    with pytest.raises(SyncFailed):
        await js.sync_from(SH, garbage, retry=retry)
    assert await js.store.get_cursor(SH, "pull") == 0
    assert len(sleeps.delays) == 2
    async with js.store.engine.connect() as conn:
        error = await conn.scalar(select(tables.sync_cursors.c.last_error))
    assert error is not None and error.startswith("PartnerGarbage: ")


async def test_garbage_records_in_a_good_page_are_rejected_one_by_one(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """Well-formed pages with bad records: those are rejected, good ones kept, cursor moves."""
    _, js = pair
    good = kit.sign(kit.payload(seq=2))
    pages = {0: {"records": ["garbage", good, 17], "next": 3}, 3: {"records": [], "next": 3}}

    async def fetch(after: int, limit: int) -> Any:
        return pages[after]

    report = await js.sync_from(SH, fetch)
    assert report.accepted == ["310000-2"]
    assert [r.error for r in report.rejected] == ["invalid_record", "invalid_record"]
    assert await js.store.get_cursor(SH, "pull") == 3


async def test_push_answer_garbage_keeps_the_push_cursor(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """A partner inbox that answers in the wrong shape leaves our push cursor where it was."""
    sh, _ = pair
    await kit.issue_tax_grades(sh, 2)

    async def send(records: list[str]) -> Any:
        return {"accepted": records[:1], "rejected": []}  # one record unanswered for

    retry, _sleeps = kit.retry(attempts=2)
    with pytest.raises(SyncFailed, match="inbox"):
        await sh.push_to(JS, send, retry=retry)
    assert await sh.store.get_cursor(JS, "push") == 0


@pytest.mark.parametrize(
    "bug",
    [TypeError("'NoneType' object is not subscriptable"), KeyError("records"), ValueError("a bug of ours"),
     ZeroDivisionError("division by zero")],
    ids=["type-error", "key-error", "plain-value-error", "zero-division"],
)
async def test_a_programming_error_is_raised_at_once_not_retried(
    pair: tuple[Region, Region], kit: Any, bug: Exception
) -> None:
    """An error that is no transport failure and no partner garbage fails the sync on the first
    attempt (no backoff hides it), names itself, and leaves the cursor where it was."""
    _, js = pair
    calls: list[int] = []

    async def buggy(after: int, limit: int) -> Any:
        calls.append(after)
        raise bug

    retry, sleeps = kit.retry(attempts=5)
    with pytest.raises(SyncFailed, match=type(bug).__name__) as info:
        await js.sync_from(SH, buggy, retry=retry)
    assert info.value.__cause__ is bug
    assert (calls, sleeps.delays) == ([0], [])
    assert await js.store.get_cursor(SH, "pull") == 0


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (ConnectionRefusedError("partner down"), True),
        (TimeoutError("partner slow"), True),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientPayloadError("transfer cut halfway"), True),
        (PartnerGarbage("the answer is not JSON"), True),
        (PartnerHTTPError("https://js/outbox", 503, "busy"), True),
        (PartnerHTTPError("https://js/outbox", 401, "token expired"), True),
        (PartnerHTTPError("https://js/outbox", 429, "slow down"), True),
        (PartnerHTTPError("https://js/outbox", 403, "not a partner"), False),
        (PartnerHTTPError("https://js/outbox", 404, "no such route"), False),
        (RuntimeError("a bug of ours"), False),
    ],
    ids=lambda value: type(value).__name__ + (f"-{value.status}" if isinstance(value, PartnerHTTPError) else "")
    if isinstance(value, Exception) else str(value),
)
def test_transient_is_transport_and_partner_garbage_only(failure: Exception, retried: bool) -> None:
    """The retry rule, one failure at a time."""
    assert transient(failure) is retried


async def test_retry_policy_retries_transient_failures_until_they_pass(kit: Any) -> None:
    """Two transport failures then success: two backoffs, one result; a refusal after them is raised."""
    failures: list[Exception] = [OSError("reset"), PartnerGarbage("half a page")]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "page"

    retry, sleeps = kit.retry(attempts=3)
    assert (await retry.run(flaky), sleeps.delays) == ("page", [0.5, 1.0])
    failures[:] = [OSError("reset"), PartnerHTTPError("https://js/outbox", 403, "removed")]
    with pytest.raises(PartnerHTTPError):
        await retry.run(flaky)
    assert sleeps.delays == [0.5, 1.0, 0.5]
