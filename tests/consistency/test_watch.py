"""Watch mode: history in SQL, what is new and resolved between runs, Prometheus metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import Result

from consistency.watch import Watcher, load_config
from consistency.watch_store import WatchStore, async_url
from credcore.clock import CST, FixedClock
from credcore.errors import ConfigError

Cli = Callable[..., Result]


def write_config(tmp_path: Path, **extra: str) -> Path:
    lines = ['authority = "authority.jsonl"', 'database = "sqlite:///watch.db"',
             'metrics_textfile = "watch.prom"', "interval_seconds = 60",
             *(f"{key} = {value}" for key, value in extra.items()),
             "[[agency]]", 'name = "mirror"', 'source = "agency.jsonl"']
    path = tmp_path / "watch.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_once_twice_reports_new_and_resolved(cli: Cli, f: SimpleNamespace,
                                             tmp_path: Path) -> None:
    """The second run names the finding that appeared and the one that went away."""
    records = [f.record(1), f.record(2)]
    f.write(tmp_path / "authority.jsonl", records)
    agency = tmp_path / "agency.jsonl"
    f.write(agency, [f.shown(records[0], fine_amount=8), f.shown(records[1])])
    config = write_config(tmp_path)
    first = cli("watch", "--config", str(config), "--once")
    assert first.exit_code == 1, first.output
    assert "run 1: mirror: 2 records, 1 violations, 1 new, 0 resolved" in first.stdout
    assert "new: content_mismatch penalty" in first.stdout

    f.write(agency, [f.shown(records[0]), f.shown(records[1], disclosure_end="2030-01-01")])
    later = FixedClock(dt.datetime(2025, 10, 21, 9, tzinfo=CST))
    second = cli("watch", "--config", str(config), "--once", clock=later)
    assert second.exit_code == 1
    assert "run 2: mirror: 2 records, 1 violations, 1 new, 1 resolved" in second.stdout
    assert "new: duration_mismatch" in second.stdout
    assert "resolved: content_mismatch" in second.stdout

    metrics = (tmp_path / "watch.prom").read_text()
    assert 'credgate_consistency_violations{agency="mirror"} 1.0' in metrics
    assert 'credgate_consistency_new_findings{agency="mirror"} 1.0' in metrics
    assert 'credgate_consistency_resolved_findings{agency="mirror"} 1.0' in metrics
    assert 'credgate_consistency_findings{agency="mirror",class="duration_mismatch"} 1.0' in (
        metrics)
    assert "credgate_consistency_authority_records 2.0" in metrics

    f.write(agency, [f.shown(records[0]), f.shown(records[1])])
    third = cli("watch", "--config", str(config), "--once", clock=later)
    assert third.exit_code == 0
    assert "0 violations, 0 new, 1 resolved" in third.stdout

    async def history() -> tuple[int, list[object]]:
        store = WatchStore(f"sqlite:///{tmp_path / 'watch.db'}")
        try:
            return len(await store.runs()), await store.open_findings("mirror")
        finally:
            await store.close()

    runs, still_open = asyncio.run(history())
    assert runs == 3 and still_open == []


def test_line_moves_do_not_renew_findings(f: SimpleNamespace, tmp_path: Path) -> None:
    """A finding whose line number changes is the same finding."""
    records = [f.record(1), f.record(2)]
    f.write(tmp_path / "authority.jsonl", records)
    agency = tmp_path / "agency.jsonl"
    f.write(agency, [f.shown(records[0], fine_amount=8)])
    messages: list[str] = []
    watcher = Watcher(load_config(str(write_config(tmp_path))), clock=FixedClock(f.AS_OF),
                      echo=messages.append)

    async def cycles() -> None:
        await watcher.store.create()
        try:
            await watcher.run_cycle()
            f.write(agency, [f.shown(records[1]), f.shown(records[0], fine_amount=8)])
            await watcher.run_cycle()
        finally:
            await watcher.store.close()

    asyncio.run(cycles())
    # Record 2 is now shown (its `missing` is resolved); the moved mismatch is not new.
    assert "run 2: mirror: 2 records, 1 violations, 0 new, 1 resolved" in messages
    assert 'credgate_consistency_runs_total 2.0' in watcher.metrics.text()


def test_unavailable_agency_resolves_nothing(cli: Cli, f: SimpleNamespace,
                                            tmp_path: Path) -> None:
    """While an agency cannot be read, its open findings stay open."""
    records = [f.record(1)]
    f.write(tmp_path / "authority.jsonl", records)
    agency = tmp_path / "agency.jsonl"
    f.write(agency, [f.shown(records[0], fine_amount=8)])
    config = write_config(tmp_path, allow_unavailable="true")
    assert cli("watch", "--config", str(config), "--once").exit_code == 1
    agency.unlink()
    result = cli("watch", "--config", str(config), "--once")
    assert result.exit_code == 0 and "mirror: unavailable" in result.stdout
    assert 'credgate_consistency_agency_up{agency="mirror"} 0.0' in (
        tmp_path / "watch.prom").read_text()


def test_failed_run_is_recorded(cli: Cli, f: SimpleNamespace, tmp_path: Path) -> None:
    """A malformed authority feed fails the cycle (exit 2) and counts as a failure."""
    (tmp_path / "authority.jsonl").write_text("{nope\n", encoding="utf-8")
    f.write(tmp_path / "agency.jsonl", [])
    result = cli("watch", "--config", str(write_config(tmp_path)), "--once")
    assert result.exit_code == 2 and "run 1: failed: authority feed" in result.stdout
    assert "credgate_consistency_run_failures_total 1.0" in (tmp_path / "watch.prom").read_text()


@pytest.mark.parametrize(("text", "why"), [
    ("authority = 1\n", "authority must be"),
    ('authority = "a"\n', "at least one [[agency]]"),
    ('authority = "a"\nbogus = 1\n', "unknown key 'bogus'"),
    ('authority = "a"\ninterval_seconds = 0\n[[agency]]\nname="x"\nsource="y"\n',
     "interval_seconds"),
    ("authority = [\n", "not valid TOML"),
])
def test_config_errors(cli: Cli, tmp_path: Path, text: str, why: str) -> None:
    """A bad config is one clear line on stderr and exit 2."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=why.replace("[", r"\[")):
        load_config(str(path))
    result = cli("watch", "--config", str(path), "--once")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_database_urls() -> None:
    """Plain SQLite and PostgreSQL URLs get their async drivers."""
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"


@pytest.mark.postgres
async def test_history_on_postgresql(pg_url: str, f: SimpleNamespace, tmp_path: Path) -> None:
    """The same history works on PostgreSQL (asyncpg)."""
    records = [f.record(1)]
    f.write(tmp_path / "authority.jsonl", records)
    agency = tmp_path / "agency.jsonl"
    f.write(agency, [f.shown(records[0], fine_amount=8)])
    config = load_config(str(write_config(tmp_path)))
    config.database = pg_url
    messages: list[str] = []
    watcher = Watcher(config, clock=FixedClock(f.AS_OF), echo=messages.append)
    await watcher.store.create()
    try:
        assert await watcher.run_cycle() == 1
        f.write(agency, [f.shown(records[0])])
        assert await watcher.run_cycle() == 0
        assert len(await watcher.store.runs()) == 2
    finally:
        await watcher.store.close()
    assert "run 2: mirror: 1 records, 0 violations, 0 new, 1 resolved" in messages


async def test_metrics_endpoint(f: SimpleNamespace, tmp_path: Path) -> None:
    """The metrics server answers the Prometheus text format at /metrics."""
    import socket

    from aiohttp import ClientSession

    from consistency.watch import WatchMetrics, _serve_metrics

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = WatchMetrics()
    metrics.violations.labels("mirror").set(3)
    runner = await _serve_metrics(metrics, "127.0.0.1", port)
    try:
        async with ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
    finally:
        await runner.cleanup()
    assert 'credgate_consistency_violations{agency="mirror"} 3.0' in text
