"""Our signing keys in the database, publishing from the store's list and from drafts, audit entries."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from credcore.errors import ConfigError, InvalidParameter
from crosstab import _jose, tables
from crosstab.audit_entries import ExchangeRecord
from crosstab.exchange import Region
from crosstab.inbox import Rejected
from crosstab.keys import database_region, load_or_create_keys, rotate_key
from crosstab.publish import list_entry_draft, parse_draft_lines, publish_from_store, region_prefix
from crosstab.records import peek_seq, peek_sub, verify_record
from crosstab.store import CrosstabStore

SH, JS = "310000", "320000"


@pytest.fixture
async def engine(databases: Any) -> Any:
    """A gateway database on SQLite or PostgreSQL (tests/crosstab/conftest.py)."""
    engine = await databases.engine("keys")
    await CrosstabStore(engine).create_tables()
    return engine


async def test_key_is_created_once_and_kept(engine: Any, clock: Any) -> None:
    """The first start creates a key; later starts load the same one."""
    assert await database_region(engine) is None
    first = await load_or_create_keys(engine, SH, clock)
    again = await load_or_create_keys(engine, SH, clock)
    assert first.signer.kid == again.signer.kid and first.signer.kid.startswith(f"{SH}-")
    assert (first.retired, await database_region(engine)) == ((), SH)


async def test_two_processes_starting_together_make_one_key(engine: Any, databases: Any, clock: Any) -> None:
    """Two gateway processes starting at once on a new database end up signing with one key."""
    other = await databases.engine("keys")  # the second process: its own pool, the same tables
    rings = await asyncio.gather(*(load_or_create_keys(e, SH, clock) for e in (engine, other, engine, other)))
    assert len({ring.signer.kid for ring in rings}) == 1
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(tables.signing_keys)) == 1


async def test_a_database_signs_for_one_region(engine: Any, clock: Any) -> None:
    """Starting with another region on the same database is a ConfigError naming both."""
    await load_or_create_keys(engine, SH, clock)
    with pytest.raises(ConfigError, match=f"{JS}.*{SH}"):
        await load_or_create_keys(engine, JS, clock)


async def test_rotation_keeps_the_old_key_published(engine: Any, clock: Any) -> None:
    """After a rotation the new key signs and the old public key is still served."""
    old = await load_or_create_keys(engine, SH, clock)
    clock.advance(60)
    new = await rotate_key(engine, SH, clock)
    assert new.signer.kid != old.signer.kid
    assert [k["kid"] for k in new.retired] == [old.signer.kid] and "d" not in new.retired[0]
    assert (await load_or_create_keys(engine, SH, clock)).signer.kid == new.signer.kid


def test_region_prefix() -> None:
    """Province, city and county codes give their shared leading digits."""
    assert [region_prefix(c) for c in ("310000", "320500", "310115")] == ["31", "3205", "310115"]


def _entry(**over: Any) -> dict[str, Any]:
    entry = {
        "record_id": "SX-000007", "kind": "serious_untrustworthy", "uscc": "92310110502510887J",
        "subject_name": "杨浦区姚记水果店", "decision_number": "沪杨市监列〔2024〕212号",
        "authority": "上海市杨浦区市场监督管理局", "authority_uscc": "11310110MBE8WA0487",
        "decision_date": "2024-10-20", "disclosure_start": "2024-10-24", "disclosure_end": "2027-10-19",
        "status": "disclosed", "removed_at": None, "list_name": "严重违法失信名单", "listing_reason": "...",
        "legal_representative_id_number": "310110198308130475",
    }
    entry.update(over)
    return entry


def test_list_entry_draft_takes_only_our_shown_entries() -> None:
    """Our region's disclosed entries become joint punishments; others, removed or expired ones do not."""
    today = dt.date(2025, 11, 25)
    jti, draft = list_entry_draft(_entry(), SH, today) or ("", None)
    assert jti == "store-SX-000007" and draft is not None
    assert (draft.type, draft.valid_from, draft.valid_until) == ("joint_punishment", dt.date(2024, 10, 24),
                                                                 dt.date(2027, 10, 19))
    assert "id_number" not in str(vars(draft))
    assert list_entry_draft(_entry(), JS, today) is None
    assert list_entry_draft(_entry(status="repaired"), SH, today) is None
    assert list_entry_draft(_entry(disclosure_end="2025-01-01"), SH, today) is None


async def test_publish_from_store_is_idempotent_and_revokes_what_left(pair: tuple[Region, Region]) -> None:
    """Publishing twice issues once; an entry gone from the list is revoked once."""
    sh, _ = pair
    entries = [_entry(), _entry(record_id="SX-000008", decision_number="沪杨市监列〔2024〕213号")]
    first = await publish_from_store(sh, entries)
    assert (first.issued, first.revoked) == (["store-SX-000007", "store-SX-000008"], [])
    again = await publish_from_store(sh, entries)
    assert (again.issued, again.unchanged) == ([], 2)
    gone = await publish_from_store(sh, entries[:1])
    assert gone.revoked == ["store-SX-000008"]
    assert (await publish_from_store(sh, entries[:1])).revoked == []
    page = await sh.outbox_page(JS, 0, 10)
    last = verify_record(page.records[-1], sh.jwks()["keys"][0])
    assert (last.type, last.revokes) == ("revocation", "store-SX-000008")


def test_draft_lines_are_all_checked_first() -> None:
    """A bad line is named; jti and domestic_only are taken from the line."""
    good = ('{"type": "evaluation", "sub": "914403001922038216", "scheme": "tax_credit", "grade": "A", '
            '"valid_from": "2025-04-01", "valid_until": "2026-03-31", "jti": "e-1", "domestic_only": true}')
    [(jti, draft)] = parse_draft_lines([good, ""], SH)
    assert (jti, draft.grade, draft.domestic_only, draft.valid_from) == ("e-1", "A", True, dt.date(2025, 4, 1))
    for bad, words in ((good.replace('"A"', '""'), "line 2"), ("[1]", "line 2"), ('{"x": 1}', "unknown")):
        with pytest.raises(InvalidParameter, match=words):
            parse_draft_lines([good, bad], SH)


def test_exchange_entry_names_partner_records_and_subjects(kit: Any) -> None:
    """The entry has the common audit members plus partner, direction, jtis, codes and subjects."""
    rec = ExchangeRecord(exchange="push", direction="in", method="POST", path="/crosstab/v1/inbox", client_id="c")
    good = kit.sign(kit.payload())
    rec.partner = SH
    rec.concern([good, "garbage", 17])
    rec.judged(["310000-1"], [Rejected(1, None, "invalid_record", "not a JWS")])
    entry = rec.entry(time="2025-11-25T02:00:00Z", status=200, body=b"{}", error=None)
    assert (entry["kind"], entry["uscc"], entry["decision"], entry["partner"]) == (
        "crosstab", [kit.HUAWEI], "allow", SH)
    assert entry["rejected"] == [{"index": 1, "jti": None, "error": "invalid_record"}]
    assert entry["body_sha256"] and entry["time"] and entry["request"]["path"] == "/crosstab/v1/inbox"
    refused = ExchangeRecord(exchange="push", direction="in")
    refused.judged([], [Rejected(0, "x", "replay", "...")])
    assert refused.entry(time="t", status=200, body=None, error=None)["decision"] == "deny"
    assert refused.entry(time="t", status=503, body=None, error="audit_unavailable")["decision"] == "error"


def test_peeks_never_raise(kit: Any) -> None:
    """peek_sub and peek_seq read what they can and return None for anything else."""
    good = kit.sign(kit.payload(seq=7))
    assert (peek_sub(good), peek_seq(good)) == (kit.HUAWEI, 7)
    bad_sub = kit.raw_jws({"alg": "EdDSA"}, {"sub": "91440300192203821X", "seq": True}, kit.keys["k"])
    for item in (bad_sub, None, 17, "a.b.c", "x" * 20000):
        assert (peek_sub(item), peek_seq(item)) == (None, None)


def test_deeply_nested_json_is_a_value_error() -> None:
    """Regression: '[[[[...' in a header or payload was a RecursionError that failed a whole batch."""
    with pytest.raises(ValueError, match="nested"):
        _jose.json_object(b"[" * 100_000)
