"""The store's HTTP API: profiles, current records, paged list and feed, contract errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from credcore.errors import ConfigError
from credstore.app import make_app
from credstore.db import build_store, open_engine
from credstore.generator import Dataset

REFERENCE = date(2026, 11, 1)
Shown = Callable[[dict[str, Any], date], bool]
NOT_IN_STORE = "914403001922038216"  # a real, valid code (shared vectors) absent from the data


async def _walk(client: Any, path: str, limit: int) -> list[dict[str, Any]]:
    """Follow `next` from the first page to the last, collecting every record."""
    records: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10_000):
        response = await client.get(path, params={"cursor": cursor, "limit": str(limit)})
        assert response.status == 200
        page = await response.json()
        assert set(page) == {"records", "next"} and len(page["records"]) <= limit
        records += page["records"]
        if page["next"] is None:
            return records
        cursor = page["next"]
    raise AssertionError("the cursor walk does not end")


async def test_profile_has_every_entity_field(store_client: Any, small: Dataset) -> None:
    """GET /v1/entities/{uscc} answers the entity, representative ID number included."""
    client = await store_client()
    entity = small.entities[3]
    response = await client.get(f"/v1/entities/{entity['uscc']}")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == entity
    assert "legal_representative_id_number" in entity


@pytest.mark.parametrize("kind,path", [("penalty", "penalties"), ("licence", "licences")])
async def test_entity_records_are_those_currently_shown(
    store_client: Any, small: Dataset, shown: Shown, kind: str, path: str
) -> None:
    """Penalties and licences answer exactly the entity's records shown today, in feed order."""
    client = await store_client()
    for uscc in small.sample_uscc():
        response = await client.get(f"/v1/entities/{uscc}/{path}")
        assert response.status == 200
        expected = [
            r for r in small.records if r["uscc"] == uscc and r["kind"] == kind
            and shown(r, REFERENCE)
        ]
        assert await response.json() == {"uscc": uscc, "records": expected}


async def test_first_sample_shows_a_penalty(store_client: Any, small: Dataset) -> None:
    """The first sample code's penalties answer is not empty."""
    client = await store_client()
    uscc = small.sample_uscc()[0]
    body = await (await client.get(f"/v1/entities/{uscc}/penalties")).json()
    assert body["records"] and all(r["status"] == "disclosed" for r in body["records"])


async def test_what_is_shown_follows_the_injected_date(
    aiohttp_client: Any, small: Dataset, shown: Shown
) -> None:
    """When today() moves on, expired records disappear without a restart."""
    day = [REFERENCE]
    client = await aiohttp_client(make_app(small, today=lambda: day[0]))
    expiring = next(
        r for r in small.records
        if r["kind"] == "penalty" and shown(r, REFERENCE) and r["disclosure_end"]
    )
    path = f"/v1/entities/{expiring['uscc']}/penalties"
    ids = [r["record_id"] for r in (await (await client.get(path)).json())["records"]]
    assert expiring["record_id"] in ids
    day[0] = date.fromisoformat(expiring["disclosure_end"]) + timedelta(days=1)
    ids = [r["record_id"] for r in (await (await client.get(path)).json())["records"]]
    assert expiring["record_id"] not in ids


async def test_feed_walk_covers_every_record_once(store_client: Any, small: Dataset) -> None:
    """Walking /v1/disclosures page by page yields every record once, removed ones included."""
    client = await store_client()
    records = await _walk(client, "/v1/disclosures", limit=7)
    assert records == list(small.records)
    assert {r["status"] for r in records} == {"disclosed", "repaired", "withdrawn"}


async def test_feed_default_and_maximum_page(store_client: Any, small: Dataset) -> None:
    """Without a limit a page has 100 records; limit=1000 returns all 300 and next null."""
    client = await store_client()
    first = await (await client.get("/v1/disclosures")).json()
    assert len(first["records"]) == 100 and first["next"]
    whole = await (await client.get("/v1/disclosures?limit=1000")).json()
    assert len(whole["records"]) == len(small.records) and whole["next"] is None


async def test_list_walk_returns_the_current_entries(
    store_client: Any, small: Dataset, shown: Shown
) -> None:
    """The serious-untrustworthy list pages through exactly the entries listed today."""
    client = await store_client()
    records = await _walk(client, "/v1/lists/serious-untrustworthy", limit=5)
    expected = [
        r for r in small.records if r["kind"] == "serious_untrustworthy" and shown(r, REFERENCE)
    ]
    assert expected and records == expected


@pytest.mark.parametrize(
    "code",
    ["914403001922038217", "9111000060003IOZSV", "91440300192203821", "9144030019220382160"],
    ids=["check-character", "excluded-letters", "17-characters", "19-characters"],
)
@pytest.mark.parametrize("suffix", ["", "/penalties", "/licences"])
async def test_malformed_codes_are_400(store_client: Any, code: str, suffix: str) -> None:
    """A malformed USCC is 400 invalid_uscc with a sentence saying why."""
    client = await store_client()
    response = await client.get(f"/v1/entities/{code}{suffix}")
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_uscc" and body["error_description"].endswith(".")


@pytest.mark.parametrize("suffix", ["", "/penalties", "/licences"])
async def test_unknown_entity_is_404(store_client: Any, suffix: str) -> None:
    """A valid code of an entity the store lacks is 404 not_found."""
    client = await store_client()
    response = await client.get(f"/v1/entities/{NOT_IN_STORE}{suffix}")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize("path", ["/v1/nothing", "/", "/v1/entities", "/v1/entities/x/y/z"])
async def test_unknown_route_is_404(store_client: Any, path: str) -> None:
    """An unknown route is 404 not_found in the contract's error body."""
    client = await store_client()
    response = await client.get(path)
    assert response.status == 404
    assert set(await response.json()) == {"error", "error_description"}


@pytest.mark.parametrize(
    "query",
    ["cursor=abc", "cursor=!!", "cursor=c2VxOjI%3D", "cursor=c2VxOi0x", "limit=0", "limit=1001",
     "limit=ten", "limit=-1", "limit=1.5"],
)
@pytest.mark.parametrize("path", ["/v1/disclosures", "/v1/lists/serious-untrustworthy"])
async def test_bad_paging_parameters_are_400(store_client: Any, path: str, query: str) -> None:
    """A cursor the store did not issue, or a limit outside 1-1000, is 400 invalid_request."""
    client = await store_client()
    response = await client.get(f"{path}?{query}")
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_wrong_method_is_an_error_body(store_client: Any) -> None:
    """POST on a read-only path is 405 with the contract's error body."""
    client = await store_client()
    response = await client.post("/v1/disclosures")
    assert response.status == 405
    assert (await response.json())["error"] == "invalid_request"


async def test_sample_lists_the_demo_codes(store_client: Any, small: Dataset) -> None:
    """GET /v1/sample answers the dataset's sample codes for demo.json, first one first."""
    client = await store_client()
    response = await client.get("/v1/sample")
    assert response.status == 200
    assert await response.json() == {"sample_uscc": small.sample_uscc()}


async def test_healthz(store_client: Any) -> None:
    """GET /healthz is 200."""
    client = await store_client()
    assert (await client.get("/healthz")).status == 200


async def test_sqlite_path_and_engine_serve_the_same(
    store_client: Any, small: Dataset, tmp_path: Any
) -> None:
    """A store loaded from SQLite, by path or by engine, answers like the in-memory dataset."""
    path = tmp_path / "store.db"
    await build_store(path, small)
    engine = open_engine(path)
    try:
        for source in (path, str(path), engine):
            client = await store_client(source)
            feed = await (await client.get("/v1/disclosures?limit=1000")).json()
            assert feed["records"] == list(small.records)
            uscc = small.sample_uscc()[0]
            profile = await (await client.get(f"/v1/entities/{uscc}")).json()
            assert profile == small.entities[0]
    finally:
        await engine.dispose()


async def test_missing_database_fails_startup(aiohttp_client: Any, tmp_path: Any) -> None:
    """Starting over a database that does not exist fails, and creates no empty file."""
    missing = tmp_path / "missing.db"
    with pytest.raises(ConfigError):
        await aiohttp_client(make_app(missing, today=lambda: REFERENCE))
    assert not missing.exists()
