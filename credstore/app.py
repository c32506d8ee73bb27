"""The store's HTTP API: the gateway's `/v1` paths, unauthenticated, for loopback only.

The store is the baseline of the gateway's benchmark, so a request does no I/O and no JSON
encoding: at startup everything is loaded from SQLite once, every record is serialized once,
and each per-entity answer is joined from those bytes. What is "currently shown" depends on
the date, so those answers are rebuilt when `today()` (a CST date) changes, not per request.

Currently shown: status `disclosed`, `disclosure_start` on or before today, and
`disclosure_end` null or on or after today. `/v1/disclosures` is the authority's whole feed
(CONTRACTS section 5): every record in every lifecycle state. `/v1/sample` gives the codes
for demo.json's `sample_uscc` (the first has a penalty shown). Every answer keeps the legal
representative's name and ID number: stripping them is the gateway's job, and its tests need
them here to prove it does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.codes import validate_uscc
from credcore.errors import ConfigError, CredgateError, NotFound
from credstore.db import StoreData, load_store, open_engine
from credstore.generator import Dataset
from credstore.paging import Page, parse_cursor, parse_limit

Source = str | Path | AsyncEngine | Dataset
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _entity_answer(uscc: str, parts: list[bytes]) -> bytes:
    return b'{"uscc":' + _dumps(uscc) + b',"records":[' + b",".join(parts) + b"]}"


class Snapshot:
    """The answers that depend on the date, for one `day`."""

    def __init__(self, day: date, data: StoreData, encoded: list[bytes]) -> None:
        self.day = day
        today = day.isoformat()  # ISO dates compare correctly as strings
        shown: dict[str, dict[str, list[bytes]]] = {"penalty": {}, "licence": {}}
        listed_seqs: list[int] = []
        listed: list[bytes] = []
        for seq, (record, body) in enumerate(zip(data.records, encoded, strict=True), start=1):
            end = record["disclosure_end"]
            if record["status"] != "disclosed" or record["disclosure_start"] > today:
                continue
            if end is not None and end < today:
                continue
            if record["kind"] == "serious_untrustworthy":
                listed_seqs.append(seq)
                listed.append(body)
            else:
                shown[record["kind"]].setdefault(record["uscc"], []).append(body)
        codes = [entity["uscc"] for entity in data.entities]
        self.penalties = {u: _entity_answer(u, shown["penalty"].get(u, [])) for u in codes}
        self.licences = {u: _entity_answer(u, shown["licence"].get(u, [])) for u in codes}
        self.listed = Page(listed_seqs, listed)


class Store:
    """All answers in memory; `snapshot()` gives those for the current CST date."""

    def __init__(self, data: StoreData, today: Callable[[], date]) -> None:
        self._data = data
        self._today = today
        self._encoded = [_dumps(record) for record in data.records]
        self.profiles = {entity["uscc"]: _dumps(entity) for entity in data.entities}
        self.sample = _dumps({"sample_uscc": data.samples})
        self.feed = Page(list(range(1, len(self._encoded) + 1)), self._encoded)
        self._snapshot = Snapshot(today(), data, self._encoded)

    def snapshot(self) -> Snapshot:
        day = self._today()
        if day != self._snapshot.day:
            self._snapshot = Snapshot(day, self._data, self._encoded)
        return self._snapshot


STORE = web.AppKey("credstore.store", Store)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _lookup(answers: dict[str, bytes], uscc: str) -> web.Response:
    body = answers.get(uscc)
    if body is None:
        validate_uscc(uscc)  # a malformed code is a 400, checked before "unknown" (404)
        raise NotFound("no entity with this Unified Social Credit Code is in the store.")
    return _json(body)


async def entity(request: web.Request) -> web.Response:
    return _lookup(request.app[STORE].profiles, request.match_info["uscc"])


async def penalties(request: web.Request) -> web.Response:
    return _lookup(request.app[STORE].snapshot().penalties, request.match_info["uscc"])


async def licences(request: web.Request) -> web.Response:
    return _lookup(request.app[STORE].snapshot().licences, request.match_info["uscc"])


def _paged(page: Page, request: web.Request) -> web.Response:
    query = request.query
    return _json(page.render(parse_cursor(query.get("cursor")), parse_limit(query.get("limit"))))


async def serious_untrustworthy(request: web.Request) -> web.Response:
    return _paged(request.app[STORE].snapshot().listed, request)


async def disclosures(request: web.Request) -> web.Response:
    return _paged(request.app[STORE].feed, request)


async def sample(request: web.Request) -> web.Response:
    """The demo's sample codes (demo.json `sample_uscc`); not a gateway path."""
    return _json(request.app[STORE].sample)


async def healthz(request: web.Request) -> web.Response:
    return _json(b'{"status":"ok"}')


def error_middleware() -> Middleware:
    """Every error becomes the contract's `{"error", "error_description"}` body."""

    @web.middleware
    async def impl(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except CredgateError as exc:
            return _json(_dumps(exc.body()), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 404:
                body = NotFound("no such route in the credit store.").body()
            else:
                body = {"error": "invalid_request", "error_description": exc.reason + "."}
            response = _json(_dumps(body), exc.status)
            if "Allow" in exc.headers:  # keep what a 405 says is allowed
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    return impl


def _loader(source: Source, today: Callable[[], date]) -> Callable[[web.Application], Any]:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = Store(await _load(source), today)
        yield

    return lifespan


async def _load(source: Source) -> StoreData:
    if isinstance(source, Dataset):
        return StoreData.from_dataset(source)
    if isinstance(source, AsyncEngine):
        return await load_store(source)
    # SQLite would create an empty file and fail later; a stat at startup blocks no one.
    if not Path(source).is_file():  # noqa: ASYNC240
        raise ConfigError(f"no credit store database at {source}; build it first")
    engine = open_engine(source)
    try:
        return await load_store(engine)
    finally:
        await engine.dispose()  # everything is in memory now; hold no file open


def make_app(source: Source, *, today: Callable[[], date]) -> web.Application:
    """The store app over a built database (path or engine) or a Dataset held in memory.

    `today` returns the current China Standard Time date; it decides what is shown.
    """
    app = web.Application(middlewares=[error_middleware()])
    app.cleanup_ctx.append(_loader(source, today))
    app.router.add_get("/v1/entities/{uscc}", entity)
    app.router.add_get("/v1/entities/{uscc}/penalties", penalties)
    app.router.add_get("/v1/entities/{uscc}/licences", licences)
    app.router.add_get("/v1/lists/serious-untrustworthy", serious_untrustworthy)
    app.router.add_get("/v1/disclosures", disclosures)
    app.router.add_get("/v1/sample", sample)
    app.router.add_get("/healthz", healthz)
    return app
