"""The store on disk: a generated `Dataset` in SQLite, through SQLAlchemy 2 Core (async).

Rows keep each entity and record as its JSON text, plus the columns a query would select on
(code, kind, status, feed position `seq`). A `meta` row names the generator version and
arguments that produced the data: `build_store` reuses a database whose meta matches and
rebuilds one that does not, so restarting the demo on the same directory is instant and
changing `--seed` or the generator never serves stale data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credcore.errors import ConfigError
from credstore.generator import Dataset, DatasetSpec, Entity, generate
from credstore.records import Record

metadata = MetaData()
meta_table = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
entities_table = Table(
    "entities", metadata,
    Column("seq", Integer, primary_key=True),
    Column("uscc", String(18), nullable=False, unique=True),
    Column("body", Text, nullable=False),
)
records_table = Table(
    "records", metadata,
    Column("seq", Integer, primary_key=True),  # position in the disclosure feed, from 1
    Column("record_id", String(16), nullable=False, unique=True),
    Column("uscc", String(18), nullable=False, index=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("body", Text, nullable=False),
)


@dataclass(frozen=True)
class StoreData:
    """What a store holds, as loaded back: the app builds its in-memory answers from this."""

    meta: dict[str, Any]
    entities: list[Entity]
    records: list[Record]  # in feed order
    samples: list[str]

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> StoreData:
        return cls(dataset.spec.as_meta(), list(dataset.entities), list(dataset.records),
                   dataset.sample_uscc())


def open_engine(path: str | Path) -> AsyncEngine:
    """An async engine on the SQLite file at `path` (created on first write)."""
    return create_async_engine(f"sqlite+aiosqlite:///{Path(path)}")


def _dumps(value: Any) -> str:
    # Chinese text stays readable in the file; compact separators keep it small.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def read_meta(engine: AsyncEngine) -> dict[str, Any] | None:
    """The stored dataset description, or None for an empty or foreign database."""
    async with engine.connect() as conn:
        has_meta = await conn.run_sync(lambda sync: sync.dialect.has_table(sync, "meta"))
        if not has_meta:
            return None
        row = (await conn.execute(
            select(meta_table.c.value).where(meta_table.c.key == "dataset")
        )).first()
    return None if row is None else dict(json.loads(row[0]))


async def _write(engine: AsyncEngine, dataset: Dataset) -> None:
    async with engine.begin() as conn:  # one transaction: a reader sees all of it or none
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(entities_table), [
            {"seq": i, "uscc": e["uscc"], "body": _dumps(e)}
            for i, e in enumerate(dataset.entities, start=1)
        ])
        await conn.execute(insert(records_table), [
            {"seq": i, "record_id": r["record_id"], "uscc": r["uscc"], "kind": r["kind"],
             "status": r["status"], "body": _dumps(r)}
            for i, r in enumerate(dataset.records, start=1)
        ])
        await conn.execute(insert(meta_table), [
            {"key": "dataset", "value": _dumps(dataset.spec.as_meta())},
            {"key": "samples", "value": _dumps(dataset.sample_uscc())},
        ])


async def _ensure(
    target: str | Path | AsyncEngine, wanted: dict[str, Any], make: Callable[[], Dataset]
) -> bool:
    engine = target if isinstance(target, AsyncEngine) else open_engine(target)
    try:
        if await read_meta(engine) == wanted:
            return False
        await _write(engine, make())
        return True
    finally:
        if engine is not target:
            await engine.dispose()


async def build_store(target: str | Path | AsyncEngine, dataset: Dataset) -> bool:
    """Load `dataset` into the database unless it already holds the same one; True if written."""
    return await _ensure(target, dataset.spec.as_meta(), lambda: dataset)


async def ensure_store(target: str | Path | AsyncEngine, spec: DatasetSpec) -> bool:
    """Like `build_store`, but generates the dataset only when the database lacks it."""
    return await _ensure(
        target, spec.as_meta(),
        lambda: generate(spec.seed, spec.entities, spec.records, spec.reference_date),
    )


async def load_store(engine: AsyncEngine) -> StoreData:
    """Everything in the store, records in feed order; ConfigError if it was never built."""
    meta = await read_meta(engine)
    if meta is None:
        raise ConfigError("the credit store database holds no dataset; build it first")
    async with engine.connect() as conn:
        entity_rows = await conn.execute(
            select(entities_table.c.body).order_by(entities_table.c.seq)
        )
        entities = [json.loads(row[0]) for row in entity_rows]
        record_rows = await conn.execute(select(records_table.c.body).order_by(records_table.c.seq))
        records = [json.loads(row[0]) for row in record_rows]
        samples_row = (await conn.execute(
            select(meta_table.c.value).where(meta_table.c.key == "samples")
        )).first()
    samples = json.loads(samples_row[0]) if samples_row else []
    return StoreData(meta, entities, records, samples)
