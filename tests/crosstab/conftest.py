"""Fixtures for crosstab: keys, a fixed clock, regions on SQLite or PostgreSQL, record crafting.

Regions are joined in memory: one region's `outbox_page` is the other's fetch function and one
region's `receive` is the other's send function, so the whole exchange runs without sockets.

Every test that stores anything runs twice, on SQLite and on PostgreSQL (`backend`, marked
`postgres`): production runs several gateway processes on PostgreSQL, where types, unique
violations and row locks behave differently. A PostgreSQL test gets its own database (the
`pg_url` fixture: created for it, dropped after it) and each region in it its own schema, so
no test, and no region, sees another's rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credcore.clock import CST, FixedClock
from credcore.codes import uscc_check_char
from credcore.db import make_engine
from crosstab import tables
from crosstab.exchange import Region, RetryPolicy
from crosstab.outbox import Signer, evaluation
from crosstab.records import RECORD_TYPES, sign_record
from crosstab.store import CrosstabStore
from crosstab.trust import DomesticPolicy, Partner, PartnerKey

SHANGHAI, JIANGSU, HONG_KONG = "310000", "320000", "810000"
MAINLAND = frozenset({"110000", "310000", "320000", "330000", "340000", "440000"})
T0 = dt.datetime(2025, 11, 25, 10, 0, tzinfo=CST)
IAT0 = int(T0.timestamp())


def uscc(body17: str) -> str:
    """A valid USCC from its first 17 characters."""
    return body17 + uscc_check_char(body17)


HUAWEI = "914403001922038216"
XIAOMI = "91110108551385082Q"
SH_COMPANY = uscc("91310115MA1K40000")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jws(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, key: OKPKey) -> str:
    """Sign arbitrary header and payload bytes, bypassing every check of `sign_record`."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(h)}.{b64(p)}".encode()
    private = key.private_key
    if not isinstance(private, Ed25519PrivateKey):
        raise TypeError("raw_jws signs with an Ed25519 private key")
    signature = private.sign(signing_input)
    return f"{signing_input.decode()}.{b64(signature)}"


def payload(iss: str = SHANGHAI, seq: int = 1, **over: Any) -> dict[str, Any]:
    """A valid evaluation payload; keyword arguments override (None removes a member)."""
    base: dict[str, Any] = {
        "iss": iss,
        "jti": f"{iss}-{seq}",
        "iat": IAT0 - 3600,
        "seq": seq,
        "type": "evaluation",
        "sub": HUAWEI,
        "subject_name": "华为技术有限公司",
        "scheme": "tax_credit",
        "grade": "A",
        "valid_from": "2025-04-01",
        "valid_until": "2026-03-31",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def new_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", private=True)


class Keys:
    """One Ed25519 key per region for the whole session (generation is cheap, but stable)."""

    def __init__(self) -> None:
        self._keys: dict[str, OKPKey] = {}

    def __getitem__(self, kid: str) -> OKPKey:
        if kid not in self._keys:
            self._keys[kid] = new_key()
        return self._keys[kid]

    def public(self, kid: str) -> dict[str, Any]:
        return dict(self[kid].as_dict(private=False))


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def partner_of(keyring: Keys, region: str, *, domestic: bool = True, **over: Any) -> Partner:
    """How another region registers `region`: its key `<region>-k1`, every record type."""
    fields: dict[str, Any] = {
        "region": region,
        "name": f"Region {region}",
        "keys": (PartnerKey(f"{region}-k1", keyring.public(f"{region}-k1")),),
        "record_types": frozenset(RECORD_TYPES),
        "domestic": domestic,
    }
    fields.update(over)
    return Partner(**fields)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL, as in production; NORMAL sync keeps tests fast (durability is not under test here).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Databases:
    """Opens one engine per name (a region, a gateway process) on the test's backend: a SQLite
    file each, or a schema each in the test's own PostgreSQL database. Two engines opened under
    one name share the tables, as two gateway processes on one database do."""

    def __init__(self, backend: str, tmp_path: Path, pg_url: str | None) -> None:
        self.backend = backend
        self._tmp = tmp_path
        self._pg_url = pg_url
        self._engines: list[AsyncEngine] = []

    async def engine(self, name: str) -> AsyncEngine:
        if self._pg_url is None:
            engine = create_async_engine(f"sqlite+aiosqlite:///{self._tmp / name}.db")
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # The production engine (asyncpg), confined to one schema by its search_path.
            schema = f"r_{name}"
            engine = make_engine(self._pg_url, connect_args={"server_settings": {"search_path": schema}})
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self._engines.append(engine)
        return engine

    async def close(self) -> None:
        for engine in self._engines:
            await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """The test's own PostgreSQL database (`pg_url`: skipped with a reason if PostgreSQL is not
    running, a failure under CI=true), or None on SQLite. A plain fixture, because an async one
    cannot set up another (`pg_url`) from inside the running event loop."""
    return str(request.getfixturevalue("pg_url")) if backend == "postgres" else None


@pytest.fixture
async def databases(backend: str, backend_url: str | None, tmp_path: Path) -> AsyncIterator[Databases]:
    dbs = Databases(backend, tmp_path, backend_url)
    yield dbs
    await dbs.close()


RegionFactory = Callable[..., Awaitable[Region]]


@pytest.fixture
async def make_region(databases: Databases, keys: Keys, clock: FixedClock) -> RegionFactory:
    """make_region(code, partners=[...]) -> a Region on its own database (or schema)."""

    async def _make(code: str, partners: Sequence[Partner] = (), **kwargs: Any) -> Region:
        store = CrosstabStore(await databases.engine(code))
        await store.create_tables()
        counter = iter(range(1, 10**6))
        region = Region(
            store=store,
            signer=Signer.from_jwk(code, f"{code}-k1", keys[f"{code}-k1"]),
            clock=clock,
            domestic=kwargs.pop("domestic", DomesticPolicy(MAINLAND)),
            new_jti=kwargs.pop("new_jti", lambda: f"{code}-r{next(counter)}"),
            **kwargs,
        )
        for partner in partners:
            await region.add_partner(partner)
        return region

    return _make


@pytest.fixture
async def pair(make_region: RegionFactory, keys: Keys) -> tuple[Region, Region]:
    """Shanghai and Jiangsu, each registered as the other's domestic partner."""
    sh = await make_region(SHANGHAI, [partner_of(keys, JIANGSU)])
    js = await make_region(JIANGSU, [partner_of(keys, SHANGHAI)])
    return sh, js


class Sleeps:
    """An injected sleep that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Kit:
    """Helpers and constants for tests (pytest's importlib mode forbids importing conftest)."""

    SHANGHAI, JIANGSU, HONG_KONG = SHANGHAI, JIANGSU, HONG_KONG
    MAINLAND = MAINLAND
    T0, IAT0 = T0, IAT0
    HUAWEI, XIAOMI, SH_COMPANY = HUAWEI, XIAOMI, SH_COMPANY
    uscc = staticmethod(uscc)
    payload = staticmethod(payload)
    raw_jws = staticmethod(raw_jws)
    b64 = staticmethod(b64)

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def sign(self, body: dict[str, Any], kid: str | None = None, alg: str = "EdDSA") -> str:
        """Sign with the production signer under `kid` (default: the issuer's key k1)."""
        kid = kid or f"{body['iss']}-k1"
        return sign_record(body, self.keys[kid], kid, alg=alg)

    def partner_of(self, region: str, **over: Any) -> Partner:
        return partner_of(self.keys, region, **over)

    @staticmethod
    def retry(attempts: int = 5) -> tuple[RetryPolicy, Sleeps]:
        """A retry policy (0.5 s doubling) whose sleeps are recorded, not waited."""
        sleeps = Sleeps()
        return RetryPolicy(attempts=attempts, base_delay=0.5, factor=2, sleep=sleeps), sleeps

    @staticmethod
    async def stored(region: Region) -> list[str]:
        """Every received jti in the order stored (a duplicate would show twice)."""
        async with region.store.engine.connect() as conn:
            rows = await conn.execute(select(tables.received.c.jti).order_by(tables.received.c.id))
            return [row.jti for row in rows]

    async def issue_tax_grades(self, region: Region, n: int) -> list[str]:
        """Issue n evaluations (tax grade A) about distinct companies; return their jtis."""
        out = []
        for i in range(n):
            sub = uscc(f"91{region.code}MA1K{i:05d}")
            draft = evaluation(sub, "tax_credit", "A", dt.date(2025, 4, 1), dt.date(2026, 3, 31))
            out.append((await region.issue(draft)).jti)
        return out

    @staticmethod
    def puller(source: Region, reader: str) -> Callable[[int, int], Awaitable[Any]]:
        """A fetch function reading `source`'s outbox as partner `reader` (pull, in memory)."""

        async def fetch(after: int, limit: int) -> Any:
            return (await source.outbox_page(reader, after, limit)).body()

        return fetch

    @staticmethod
    def pusher(target: Region, sender: str) -> Callable[[list[str]], Awaitable[Any]]:
        """A send function posting to `target`'s inbox as partner `sender` (push, in memory)."""

        async def send(records: list[str]) -> Any:
            return (await target.receive(sender, records)).body()

        return send


@pytest.fixture
def kit(keys: Keys) -> Kit:
    return Kit(keys)
