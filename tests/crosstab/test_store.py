"""Storage and the region's inbox/outbox through it: codes end to end, races, atomicity, pages."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.util import await_only

from credcore.errors import InvalidParameter
from crosstab import tables
from crosstab.access import PartnerAccess
from crosstab.crosswalk import packaged_crosswalk
from crosstab.errors import InvalidRecord, Replay, StaleSeq
from crosstab.exchange import Region
from crosstab.inbox import InboxState, decide
from crosstab.outbox import evaluation
from crosstab.partner_http import Link, check_base_url
from crosstab.partners import build_partner, parse_registration
from crosstab.records import MAX_BATCH, TYP, verify_record
from crosstab.trust import PartnerKey

SH, JS = "310000", "320000"
D = dt.date


async def count(region: Region, table: Any) -> int:
    async with region.store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_partner_round_trip(pair: tuple[Region, Region], kit: Any) -> None:
    """A partner with rotating keys, types, endpoints and domestic flag survives the store."""
    _, js = pair
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    partner = kit.partner_of(
        "330000",
        keys=(
            PartnerKey("zj-1", kit.keys.public("zj-1"), valid_until=end),
            PartnerKey("zj-2", kit.keys.public("zj-2"), valid_from=end),
        ),
        record_types=frozenset({"evaluation", "revocation"}),
        outbox_url="https://credit.zj.example/crosstab/v1/outbox",
        domestic=False,
    )
    await js.add_partner(partner)
    assert await js.store.get_partner("330000") == partner
    assert [p.region for p in await js.store.list_partners()] == [SH, "330000"]
    assert partner.key_for("zj-1", int(start.timestamp())) is not None
    assert partner.key_for("zj-2", int(start.timestamp())) is None
    await js.add_partner(partner.with_keys(partner.keys[1:]))  # replace: old key gone
    assert [k.kid for k in (await js.store.get_partner("330000")).keys] == ["zj-2"]
    assert await js.remove_partner("330000") is True
    assert "330000" not in await js.store.registry()
    assert await count(js, tables.partner_keys) == 1  # only Shanghai's key is left


def _bad_inputs(kit: Any) -> list[tuple[str, str]]:
    """(JWS, expected code) for each bad input of the issue, after seq 1 (jti 310000-1)."""
    header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
    full = kit.sign(kit.payload(seq=5))
    return [
        ("garbage", "invalid_record"),
        (full[: len(full) // 2], "invalid_record"),
        (
            kit.raw_jws(header, kit.payload(seq=5, authority="x" * 20000), kit.keys["310000-k1"]),
            "invalid_record",
        ),
        (kit.sign(kit.payload(iss=JS, seq=5), kid="310000-k1"), "wrong_issuer"),
        (kit.sign(kit.payload(seq=5), kid="310000-k7"), "unknown_key"),
        (kit.raw_jws(header, kit.payload(seq=5), kit.keys["evil"]), "bad_signature"),
        (
            kit.sign(kit.payload(seq=5, valid_from="2024-01-01", valid_until="2024-12-31")),
            "expired",
        ),
        (kit.sign(kit.payload(seq=5, jti="310000-1", grade="D")), "replay"),
        (kit.sign(kit.payload(seq=1, jti="310000-x")), "stale_seq"),
        (
            kit.sign(kit.payload(seq=5, scheme="csj_enterprise_credit", grade="A-")),
            "unmapped_grade",
        ),
    ]


async def test_every_bad_input_gets_its_code_through_the_store(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """Each bad input of the issue, in one batch after a stored record, gets the right code."""
    _, js = pair
    await js.receive(SH, [kit.sign(kit.payload(seq=1))])
    cases = _bad_inputs(kit)
    good = kit.sign(kit.payload(seq=6, jti="310000-6"))
    result = await js.receive(SH, [jws for jws, _ in cases] + [good])
    assert [r.error for r in result.rejected] == [code for _, code in cases]
    assert [r.index for r in result.rejected] == list(range(len(cases)))
    assert result.accepted == ["310000-6"]
    assert await count(js, tables.received) == 2


async def test_batch_over_limit_is_refused_whole(pair: tuple[Region, Region], kit: Any) -> None:
    """A batch over the limit stores nothing, not even its good records."""
    _, js = pair
    from crosstab.errors import BatchTooLarge

    with pytest.raises(BatchTooLarge):
        await js.receive(SH, [kit.sign(kit.payload(seq=1))] * (MAX_BATCH + 1))
    assert await count(js, tables.received) == 0


async def test_lost_races_are_refused_by_the_store(pair: tuple[Region, Region], kit: Any) -> None:
    """Decisions on a stale snapshot are refused at write time and leave no row behind."""
    _, js = pair
    partner = kit.partner_of(SH)

    def judged(body: dict[str, Any]) -> Any:
        result = decide(
            partner, [kit.sign(body)], InboxState(), now=kit.T0, crosswalk=packaged_crosswalk()
        )
        return result.to_store[0]

    first = judged(kit.payload(seq=2))
    assert await js.store.accept(first, kit.T0) == "stored"
    assert await js.store.accept(first, kit.T0) == "duplicate"
    with pytest.raises(StaleSeq):
        await js.store.accept(judged(kit.payload(seq=1, jti="other")), kit.T0)
    with pytest.raises(Replay):
        await js.store.accept(judged(kit.payload(seq=3, jti="310000-2")), kit.T0)
    assert await count(js, tables.received) == 1


async def test_concurrent_identical_pushes_store_once(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """The same batch pushed twice at once is accepted by both requests and stored once."""
    _, js = pair
    batch = [kit.sign(kit.payload(seq=n)) for n in range(1, 6)]
    first, second = await asyncio.gather(js.receive(SH, batch), js.receive(SH, batch))
    assert first.accepted == second.accepted == [f"310000-{n}" for n in range(1, 6)]
    assert await count(js, tables.received) == 5


async def test_outbox_seq_is_strict_and_drafts_are_validated(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """Issued records get seq 1, 2, 3; an invalid draft raises and uses up no seq."""
    sh, _ = pair
    ok = evaluation(kit.HUAWEI, "tax_credit", "M", D(2025, 4, 1), D(2026, 3, 31))
    bad = evaluation("not-a-code", "tax_credit", "A", D(2025, 4, 1), D(2026, 3, 31))
    first = await sh.issue(ok)
    with pytest.raises(InvalidRecord):
        await sh.issue(bad)
    second = await sh.issue(ok)
    assert (first.seq, second.seq) == (1, 2)
    assert await count(sh, tables.issued) == 2
    key = sh.jwks()["keys"][0]
    assert verify_record(second.jws, key).seq == 2


async def test_outbox_page_parameters(pair: tuple[Region, Region], kit: Any) -> None:
    """after and limit are checked; limit is capped at a batch; next stays put when empty."""
    sh, _ = pair
    for _ in range(3):
        await sh.issue(evaluation(kit.HUAWEI, "tax_credit", "A", D(2025, 4, 1), D(2026, 3, 31)))
    page = await sh.outbox_page(JS, 1, 10_000)
    assert (len(page.records), page.next) == (2, 3)
    assert (await sh.outbox_page(JS, 3)).body() == {"records": [], "next": 3}
    for after, limit in [(-1, 10), (0, 0), (0, -5)]:
        with pytest.raises(InvalidParameter):
            await sh.outbox_page(JS, after, limit)


def test_jwks_publishes_public_keys_only(pair: tuple[Region, Region]) -> None:
    """jwks.json carries kid, alg and use, and never a private part."""
    sh, _ = pair
    [key] = sh.jwks()["keys"]
    assert key["kid"] == "310000-k1" and key["alg"] == "EdDSA" and key["use"] == "sig"
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key


async def test_revocations_are_not_recognitions(pair: tuple[Region, Region], kit: Any) -> None:
    """Only evaluations and list entries are shown; a revocation shows on its target."""
    _, js = pair
    rev = kit.payload(
        seq=2,
        type="revocation",
        scheme=None,
        grade=None,
        valid_from=None,
        valid_until=None,
        revokes="310000-1",
    )
    await js.receive(SH, [kit.sign(kit.payload(seq=1)), kit.sign(rev)])
    [rec] = await js.recognitions(kit.HUAWEI)
    assert (rec.jti, rec.revoked, rec.revoked_by) == ("310000-1", True, "310000-2")
    assert await js.recognitions(kit.XIAOMI) == []


# --- two gateway processes on one database (PostgreSQL in production) --------------------


async def test_backend_is_the_one_named(pair: tuple[Region, Region], backend: str) -> None:
    """The parametrization is real: the postgres runs talk to PostgreSQL through asyncpg."""
    sh, _ = pair
    assert sh.store.engine.dialect.name == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]


async def test_two_processes_accept_the_same_batch_at_once(make_region: Any, kit: Any) -> None:
    """Three requests on two engines (two gateway processes) race to accept one batch: every
    request lists every record as accepted, and each is stored once with the seq at the top."""
    first = await make_region(JS, [kit.partner_of(SH)])
    second = await make_region(JS)  # the same tables, through its own connection pool
    batch = [kit.sign(kit.payload(seq=n)) for n in range(1, 9)]
    results = await asyncio.gather(first.receive(SH, batch), second.receive(SH, batch), first.receive(SH, batch))
    for result in results:
        assert (result.accepted, result.rejected) == ([f"310000-{n}" for n in range(1, 9)], [])
    assert sorted(await kit.stored(first)) == sorted(f"310000-{n}" for n in range(1, 9))
    assert (await first.store.inbox_state(SH, [])).last_seq == {SH: 8}


async def test_a_first_delivery_committed_inside_a_resends_snapshot_is_a_duplicate(
    make_region: Any, kit: Any
) -> None:
    """Regression (a race seen on both backends): a re-send judged while its first delivery
    commits was refused as stale_seq when the commit fell between the snapshot's two reads. The
    first delivery, through another process, is made to commit right after the re-send's first
    read of the state: the re-send is still accepted, and the record stored once."""
    first = await make_region(JS, [kit.partner_of(SH)])
    second = await make_region(JS)
    batch = [kit.sign(kit.payload(seq=1))]
    fired: list[Any] = []

    def commit_after_first_state_read(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        reads_state = statement.lstrip().upper().startswith("SELECT") and (
            "crosstab_issuer_seq" in statement or "crosstab_received" in statement)
        if reads_state and not fired:
            # The handler runs in SQLAlchemy's greenlet: await_only runs the other process's
            # delivery to its commit on the event loop before this read's caller goes on.
            fired.append(await_only(second.receive(SH, batch)))

    event.listen(first.store.engine.sync_engine, "after_cursor_execute", commit_after_first_state_read)
    result = await first.receive(SH, batch)
    assert fired and fired[0].accepted == ["310000-1"]
    assert (result.accepted, result.rejected) == (["310000-1"], [])
    assert await kit.stored(first) == ["310000-1"]


async def test_a_jti_raced_for_two_records_stores_one_and_refuses_the_other(
    make_region: Any, kit: Any
) -> None:
    """Two different records under one jti, each judged on a snapshot where the jti was free,
    are written at once from two processes: the unique (issuer, jti) key stores exactly one and
    the other is refused as a replay (never a 500, never both)."""
    first = await make_region(JS, [kit.partner_of(SH)])
    second = await make_region(JS)
    partner = kit.partner_of(SH)

    def judged(body: dict[str, Any]) -> Any:
        result = decide(partner, [kit.sign(body)], InboxState(), now=kit.T0, crosswalk=packaged_crosswalk())
        return result.to_store[0]

    a, b = judged(kit.payload(seq=2, jti="raced", grade="A")), judged(kit.payload(seq=3, jti="raced", grade="D"))
    outcomes = await asyncio.gather(first.store.accept(a, kit.T0), second.store.accept(b, kit.T0),
                                    return_exceptions=True)
    assert sorted(type(o).__name__ if isinstance(o, Exception) else o for o in outcomes) == ["Replay", "stored"]
    assert await count(first, tables.received) == 1


async def test_two_processes_issue_in_strict_seq_order(make_region: Any, kit: Any) -> None:
    """Two processes issuing at once take distinct seqs 1..n with no gap, and the outbox serves
    them in seq order, each record signed with the seq it is stored under."""
    first = await make_region(SH, [kit.partner_of(JS)])
    second = await make_region(SH)
    draft = evaluation(kit.HUAWEI, "tax_credit", "A", D(2025, 4, 1), D(2026, 3, 31))
    issued = await asyncio.gather(*(region.issue(draft, f"race-{i}")
                                    for i in range(12) for region in (first, second) if i % 2 == (region is second)))
    assert sorted(r.seq for r in issued) == list(range(1, 13))
    page = await second.outbox_page(JS, 0, 100)
    key = first.jwks()["keys"][0]
    assert [verify_record(jws, key).seq for jws in page.records] == list(range(1, 13))
    assert page.next == 12


async def test_stored_values_keep_their_types(pair: tuple[Region, Region], kit: Any, clock: Any) -> None:
    """Dates, aware times, booleans and 53-bit seqs read back as they were written."""
    _, js = pair
    big = 2**53 - 1
    body = kit.payload(seq=big, jti="310000-1", valid_from="2025-04-01", valid_until="2026-03-31")
    assert (await js.receive(SH, [kit.sign(body)])).accepted == ["310000-1"]
    [rec] = await js.recognitions(kit.HUAWEI)
    assert (rec.seq, rec.valid_from, rec.valid_until, rec.revoked) == (big, D(2025, 4, 1), D(2026, 3, 31), False)
    assert rec.received_at == clock.now() and rec.received_at.utcoffset() is not None
    assert (await js.store.inbox_state(SH, ["310000-1"])).last_seq == {SH: big}
    await js.store.set_cursor(SH, "pull", big, clock.now(), None)
    assert await js.store.get_cursor(SH, "pull") == big


async def test_values_longer_than_their_column_are_refused_before_the_database(
    pair: tuple[Region, Region], kit: Any
) -> None:
    """A kid, a partner URL or a client id longer than its column is refused with a clear error
    naming it, on both backends (PostgreSQL would otherwise fail the request with a 500 where
    SQLite, which ignores VARCHAR lengths, stored it); the longest allowed values round-trip."""
    sh, _ = pair
    kid = "k" * 128
    jwks = {"keys": [{**kit.keys.public("long"), "kid": kid}]}
    body = {"region": "330000", "name": "Zhejiang", "jwks": jwks, "record_types": ["evaluation"]}
    await sh.add_partner(build_partner(parse_registration(body, SH), None, kit.T0))
    assert [k.kid for k in (await sh.store.get_partner("330000")).keys] == [kid]
    jwks["keys"][0]["kid"] = kid + "k"
    with pytest.raises(InvalidParameter) as info:
        parse_registration(body, SH)
    assert info.value.parameter == "jwks" and "128" in info.value.description

    access = PartnerAccess(sh.store.engine)
    url = "https://credit.zj.example/" + "p" * (500 - len("https://credit.zj.example/"))
    await access.save_link(Link("330000", check_base_url(url), "c" * 128, "secret"), kit.T0)
    assert await access.links("330000") == [Link("330000", url, "c" * 128, "secret")]
    with pytest.raises(ValueError, match="500"):
        check_base_url(url + "p")
