"""Run history and findings of watch mode, in SQL (SQLAlchemy 2 async: SQLite or PostgreSQL).

A finding is identified across runs by its fingerprint: a digest of the agency, the class, the
key and what it says (fields, deadline, reason), but not the line number, which moves whenever
an agency adds a line above it. A finding is open from the run that first saw it until the first
run of the same agency that no longer does (`resolved_run`); an unavailable agency resolves
nothing, because nothing is known about it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from credcore.canonical import digest_json
from credcore.db import create_schema


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "consistency_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    as_of: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    authority_records: Mapped[int] = mapped_column(Integer, default=0)
    violations: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class AgencyRun(Base):
    __tablename__ = "consistency_agency_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("consistency_runs.id"), index=True)
    agency: Mapped[str] = mapped_column(String(200))
    records: Mapped[int] = mapped_column(Integer)
    violations: Mapped[int] = mapped_column(Integer)
    new: Mapped[int] = mapped_column(Integer)
    resolved: Mapped[int] = mapped_column(Integer)
    unavailable: Mapped[str | None] = mapped_column(Text)


class Finding(Base):
    __tablename__ = "consistency_findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    finding_class: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)
    first_run: Mapped[int] = mapped_column(ForeignKey("consistency_runs.id"))
    last_run: Mapped[int] = mapped_column(ForeignKey("consistency_runs.id"))
    resolved_run: Mapped[int | None] = mapped_column(ForeignKey("consistency_runs.id"))

    __table_args__ = (Index("ix_consistency_findings_open", "agency", "resolved_run"),)


def fingerprint(agency: str, finding: dict[str, Any]) -> str:
    """What identifies a finding from one run to the next (its line number does not)."""
    basis = {name: value for name, value in finding.items() if name != "line"}
    if "key" not in finding:
        basis["line"] = finding.get("line")  # a line that has no key is known by its place
    return digest_json({"agency": agency, "finding": basis})


def async_url(url: str) -> str:
    """The async driver's URL for a plain `sqlite://` or `postgresql://` URL."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


@dataclass
class Delta:
    new: list[dict[str, Any]]
    resolved: list[dict[str, Any]]


class WatchStore:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(async_url(url))
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create(self) -> None:
        async with self.engine.begin() as connection:
            await create_schema(connection, Base.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    async def start_run(self, started_at: dt.datetime, as_of: dt.datetime) -> int:
        async with self.sessions.begin() as session:
            run = Run(started_at=started_at, as_of=as_of)
            session.add(run)
            await session.flush()
            return run.id

    async def finish_run(self, run_id: int, finished_at: dt.datetime, *, authority_records: int,
                         violations: int, error: str | None = None) -> None:
        async with self.sessions.begin() as session:
            await session.execute(update(Run).where(Run.id == run_id).values(
                finished_at=finished_at, authority_records=authority_records,
                violations=violations, error=error))

    async def record_agency(self, run_id: int, agency: str, findings: Sequence[dict[str, Any]],
                            *, records: int, violations: int, unavailable: str | None) -> Delta:
        """Store one agency's outcome; returns the findings new and resolved since last run."""
        async with self.sessions.begin() as session:
            rows = (await session.execute(
                select(Finding.id, Finding.fingerprint, Finding.detail)
                .where(Finding.agency == agency, Finding.resolved_run.is_(None))
            )).all()
            open_by_print = {row.fingerprint: row for row in rows}
            delta = Delta(new=[], resolved=[])
            if unavailable is None:
                current = {fingerprint(agency, finding): finding for finding in findings}
                for mark, finding in current.items():
                    if mark not in open_by_print:
                        delta.new.append(finding)
                        session.add(Finding(
                            agency=agency, fingerprint=mark, finding_class=finding["class"],
                            detail=json.dumps(finding, ensure_ascii=False), first_run=run_id,
                            last_run=run_id))
                gone = [row for mark, row in open_by_print.items() if mark not in current]
                kept = [row.id for mark, row in open_by_print.items() if mark in current]
                delta.resolved = [json.loads(row.detail) for row in gone]
                for chunk in _chunks([row.id for row in gone]):
                    await session.execute(update(Finding).where(Finding.id.in_(chunk))
                                          .values(resolved_run=run_id))
                for chunk in _chunks(kept):
                    await session.execute(update(Finding).where(Finding.id.in_(chunk))
                                          .values(last_run=run_id))
            session.add(AgencyRun(run_id=run_id, agency=agency, records=records,
                                  violations=violations, new=len(delta.new),
                                  resolved=len(delta.resolved), unavailable=unavailable))
            return delta

    async def runs(self) -> list[Run]:
        async with self.sessions() as session:
            return list((await session.execute(select(Run).order_by(Run.id))).scalars())

    async def open_findings(self, agency: str) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = await session.execute(select(Finding.detail).where(
                Finding.agency == agency, Finding.resolved_run.is_(None)).order_by(Finding.id))
            return [json.loads(detail) for detail in rows.scalars()]


def _chunks(ids: Iterable[int], size: int = 500) -> Iterable[list[int]]:
    batch: list[int] = []
    for value in ids:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
