"""The SQLite store: a faithful round trip, and idempotent builds keyed by the dataset's meta."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from credcore.errors import ConfigError
from credstore.db import (
    build_store,
    ensure_store,
    load_store,
    open_engine,
    read_meta,
    records_table,
)
from credstore.generator import Dataset, DatasetSpec, generate


async def test_round_trip_keeps_everything(small: Dataset, tmp_path: Path) -> None:
    """Entities, records (in feed order), samples and meta come back as generated."""
    engine = open_engine(tmp_path / "store.db")
    try:
        assert await build_store(engine, small) is True
        data = await load_store(engine)
    finally:
        await engine.dispose()
    assert data.entities == list(small.entities)
    assert data.records == list(small.records)
    assert data.samples == small.sample_uscc()
    assert data.meta == small.spec.as_meta()


async def test_build_is_idempotent_and_rebuilds_on_change(
    small: Dataset, small_args: dict[str, Any], tmp_path: Path
) -> None:
    """The same dataset is reused; another seed replaces the data rather than adding to it."""
    path = tmp_path / "store.db"
    assert await build_store(path, small) is True
    assert await build_store(path, small) is False
    assert await ensure_store(path, small.spec) is False
    other = generate(**{**small_args, "seed": 8})
    assert await build_store(path, other) is True
    engine = open_engine(path)
    try:
        assert await read_meta(engine) == other.spec.as_meta()
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(records_table))).scalar()
        assert count == len(other.records)
    finally:
        await engine.dispose()


async def test_ensure_store_generates_when_needed(tmp_path: Path, small: Dataset) -> None:
    """ensure_store builds the dataset its spec describes into an empty database."""
    path = tmp_path / "store.db"
    spec = DatasetSpec(seed=7, entities=50, records=300, reference_date=date(2026, 11, 1))
    assert await ensure_store(path, spec) is True
    engine = open_engine(path)
    try:
        assert (await load_store(engine)).records == list(small.records)
    finally:
        await engine.dispose()


async def test_loading_an_empty_database_says_so(tmp_path: Path) -> None:
    """An empty database raises ConfigError rather than serving nothing."""
    engine = open_engine(tmp_path / "empty.db")
    try:
        with pytest.raises(ConfigError, match="no dataset"):
            await load_store(engine)
    finally:
        await engine.dispose()


async def test_default_size_builds_and_reloads(tmp_path: Path) -> None:
    """The default 2000 entities / 10000 records generate, load and reload (no timing assert)."""
    dataset = generate()
    path = tmp_path / "default.db"
    assert await build_store(path, dataset) is True
    assert await ensure_store(path, DatasetSpec()) is False
    engine = open_engine(path)
    try:
        data = await load_store(engine)
    finally:
        await engine.dispose()
    assert (len(data.entities), len(data.records)) == (2000, 10000)
