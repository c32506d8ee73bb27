"""The licence store: versioned changes that processes reload incrementally, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text, update

from credcore.clock import CST
from credcore.db import make_engine
from policies.licence import parse_licence
from policies.store import LicenceStore, licences
from tests.policies.support import fresh_pg_database
from tests.policies.test_licence import GOOD

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=CST)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[LicenceStore]:
    """A started LicenceStore on each database."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
        store = LicenceStore(engine)
        await store.start()
        yield store
        await engine.dispose()
        return
    async with fresh_pg_database() as url:
        engine = make_engine(url)
        store = LicenceStore(engine)
        await store.start()
        yield store
        await engine.dispose()


async def test_changes_list_only_rows_after_a_version(store: LicenceStore) -> None:
    """A process at version V reads only what changed after V; from 0 it reads everything."""
    await store.upsert_operator("a", name="A", org_uscc=None, now=NOW)
    await store.put_licence(parse_licence(GOOD, licence_id="LA", client_id="a"), NOW)
    seen = await store.version()
    await store.upsert_operator("b", name="B", org_uscc=None, now=NOW)
    await store.put_licence(parse_licence(GOOD, licence_id="LB", client_id="b"), NOW)
    await store.set_operator_status("a", "suspended", "test", NOW)

    since = await store.changes(seen)
    assert not since.full
    assert [row.licence_id for row in since.licences] == ["LB"]
    assert sorted(since.operators) == [("a", "suspended"), ("b", "active")]
    assert since.version == await store.version()

    everything = await store.changes(0)
    assert everything.full
    assert sorted(row.licence_id for row in everything.licences) == ["LA", "LB"]
    assert (await store.changes(since.version)).licences == ()


async def test_a_database_behind_the_process_reloads_in_full(store: LicenceStore) -> None:
    """A version ahead of the database (restored backup) reads everything again."""
    changes = await store.changes(10_000)
    assert changes.full


async def test_failed_change_does_not_move_the_version(store: LicenceStore) -> None:
    """Suspending an unknown operator or revoking an unknown licence changes nothing."""
    before = await store.version()
    assert not await store.set_operator_status("nobody", "suspended", "x", NOW)
    assert await store.set_licence_status("nothing", "revoked", NOW) is None
    assert await store.version() == before


async def test_revoked_licence_keeps_its_terms(store: LicenceStore) -> None:
    """Revoking rewrites only the status; the record of what was granted stays."""
    await store.upsert_operator("a", name="A", org_uscc=None, now=NOW)
    await store.put_licence(parse_licence(GOOD, licence_id="LA", client_id="a"), NOW)
    revoked = await store.set_licence_status("LA", "revoked", NOW)
    assert revoked is not None and revoked.status == "revoked"
    row = await store.licence("LA")
    assert row is not None and row.licence is not None
    assert row.licence.status == "revoked" and row.licence.regions == ("110105", "310000")


async def test_a_row_edited_into_nonsense_grants_nothing(store: LicenceStore) -> None:
    """A stored body that no longer parses is listed with no licence (fail closed)."""
    await store.upsert_operator("a", name="A", org_uscc=None, now=NOW)
    await store.put_licence(parse_licence(GOOD, licence_id="LA", client_id="a"), NOW)
    async with store._engine.begin() as conn:
        await conn.execute(update(licences).values(body='{"datasets": {"everything": "*"}}'))
    row = await store.licence("LA")
    assert row is not None and row.licence is None


async def test_tables_from_before_revisions_are_migrated(tmp_path) -> None:
    """A database whose licence tables lack the revision column gets it at start, rows at revision 0."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    async with engine.begin() as conn:
        await conn.execute(text(
            "CREATE TABLE operators (client_id VARCHAR(200) PRIMARY KEY, name VARCHAR(300) NOT NULL, "
            "org_uscc VARCHAR(18), status VARCHAR(16) NOT NULL, reason TEXT, updated_us BIGINT NOT NULL)"
        ))
        await conn.execute(text(
            "CREATE TABLE licences (licence_id VARCHAR(100) PRIMARY KEY, client_id VARCHAR(200) NOT NULL, "
            "body TEXT NOT NULL, status VARCHAR(16) NOT NULL, updated_us BIGINT NOT NULL)"
        ))
        await conn.execute(text("INSERT INTO operators VALUES ('a', 'A', NULL, 'suspended', 'old', 0)"))
    store = LicenceStore(engine)
    await store.start()
    changes = await store.changes(0)
    assert changes.operators == (("a", "suspended"),)
    await store.upsert_operator("b", name="B", org_uscc=None, now=NOW)
    assert (await store.changes(1)).operators == (("b", "active"),)
    await engine.dispose()


async def test_incidents_are_listed_oldest_first(store: LicenceStore) -> None:
    """Incidents keep who, why, the detail and the audit entry of the action taken."""
    first = await store.record_incident("a", kind="scope_violations", reason="r1", detail={"count": 31},
                                        action="suspended", audit_index=7, now=NOW)
    await store.record_incident("b", kind="enumeration_not_found", reason="r2", detail={}, action="suspended",
                                audit_index=None, now=NOW)
    rows = await store.incidents()
    assert [r["client_id"] for r in rows] == ["a", "b"]
    assert rows[0]["detail"] == {"count": 31} and rows[0]["audit_index"] == 7 and rows[0]["id"] == first
    assert [r["kind"] for r in await store.incidents(client_id="b")] == ["enumeration_not_found"]
    assert await store.incidents(after=rows[-1]["id"]) == []
