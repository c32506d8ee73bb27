"""A sync across a key rotation the receiver has not registered yet: it stops, loses nothing, resumes."""

from __future__ import annotations

from typing import Any

import pytest

from crosstab.errors import SyncFailed
from crosstab.exchange import PageOutcome, Region
from crosstab.outbox import Signer
from crosstab.trust import PartnerKey

SH, JS = "310000", "320000"


def both_keys(kit: Any) -> tuple[PartnerKey, ...]:
    return tuple(PartnerKey(f"{SH}-k{n}", kit.keys.public(f"{SH}-k{n}")) for n in (1, 2))


async def rotated_stream(sh: Region, kit: Any) -> list[str]:
    """Two records under Shanghai's k1, then two under k2."""
    jtis = await kit.issue_tax_grades(sh, 2)
    sh.rotate_key(Signer.from_jwk(SH, f"{SH}-k2", kit.keys[f"{SH}-k2"]))
    return jtis + await kit.issue_tax_grades(sh, 2)


async def test_pull_stops_in_front_of_an_unregistered_key_and_resumes(pair: tuple[Region, Region], kit: Any) -> None:
    """Records under the new key are neither refused for good nor skipped: the cursor waits for the key."""
    sh, js = pair
    jtis = await rotated_stream(sh, kit)
    with pytest.raises(SyncFailed, match="new key") as info:
        await js.sync_from(SH, kit.puller(sh, JS), limit=10)
    assert info.value.report is not None and info.value.report.accepted == jtis[:2]
    assert await js.store.get_cursor(SH, "pull") == 2
    with pytest.raises(SyncFailed):  # still stuck, still nothing skipped
        await js.sync_from(SH, kit.puller(sh, JS))
    await js.add_partner(kit.partner_of(SH, keys=both_keys(kit)))
    report = await js.sync_from(SH, kit.puller(sh, JS))
    assert (report.accepted, report.rejected, report.complete) == (jtis[2:], [], True)
    assert await kit.stored(js) == jtis


async def test_push_pages_never_straddle_our_rotation(pair: tuple[Region, Region], kit: Any) -> None:
    """Pushing, the k2 page is refused whole by a partner without k2; the push cursor waits in front of it."""
    sh, js = pair
    jtis = await rotated_stream(sh, kit)
    with pytest.raises(SyncFailed, match="does not know our signing key") as info:
        await sh.push_to(JS, kit.pusher(js, SH), limit=10)
    assert info.value.report is not None and info.value.report.accepted == jtis[:2]
    assert await sh.store.get_cursor(JS, "push") == 2
    await js.add_partner(kit.partner_of(SH, keys=both_keys(kit)))
    report = await sh.push_to(JS, kit.pusher(js, SH))
    assert (report.accepted, report.rejected) == (jtis[2:], [])
    assert await kit.stored(js) == jtis


async def test_on_page_runs_before_the_cursor_moves(pair: tuple[Region, Region], kit: Any) -> None:
    """If recording a page fails (say the audit log is down), the cursor stays and the page comes again."""
    sh, js = pair
    jtis = await kit.issue_tax_grades(sh, 3)
    seen: list[PageOutcome] = []

    async def broken(page: PageOutcome) -> None:
        raise OSError("audit log unavailable")

    with pytest.raises(SyncFailed):
        await js.sync_from(SH, kit.puller(sh, JS), on_page=broken)
    assert await js.store.get_cursor(SH, "pull") == 0

    async def record(page: PageOutcome) -> None:
        seen.append(page)

    report = await js.sync_from(SH, kit.puller(sh, JS), on_page=record, limit=2)
    assert report.accepted == jtis
    assert [(p.direction, p.accepted, p.cursor_before, p.cursor_after) for p in seen] == [
        ("pull", jtis[:2], 0, 2), ("pull", jtis[2:], 2, 3)
    ]
