"""Watch mode: the consistency check as a scheduled compliance job.

Each cycle runs the check, stores the run and its findings (consistency.watch_store), says what
is new and what was resolved since the previous run, and updates Prometheus metrics, served on
`metrics_port` and/or written to `metrics_textfile` (node_exporter's textfile collector, handy
for `--once` under cron). The config is TOML; relative paths in it are relative to its folder:

    authority = "http://127.0.0.1:8081/v1/disclosures"
    interval_seconds = 3600
    grace_working_days = 3
    database = "sqlite:///consistency-watch.db"
    metrics_port = 9464

    [[agency]]
    name = "mirror"
    source = "http://127.0.0.1:8082/agency.jsonl"
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    write_to_textfile,
)

from consistency.check import run_check
from consistency.errors import SourceError
from consistency.report import Report, render_html, render_json
from consistency.watch_store import WatchStore
from credcore.clock import Clock
from credcore.errors import ConfigError, CredgateError

_KEYS = {"authority", "agency", "interval_seconds", "grace_working_days", "database",
         "encoding", "allow_unavailable", "metrics_port", "metrics_host", "metrics_textfile",
         "report_dir", "attempts", "backoff_seconds", "timeout_seconds"}


@dataclass
class WatchConfig:
    authority: str
    agencies: list[tuple[str, str]]
    interval_seconds: float = 3600.0
    grace_working_days: int = 3
    database: str = "sqlite:///consistency-watch.db"
    encoding: str | None = None
    allow_unavailable: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_textfile: str | None = None
    report_dir: str | None = None
    http: dict[str, Any] = field(default_factory=dict)


def _path(base: Path, value: str) -> str:
    if "://" in value or Path(value).is_absolute():
        return value
    return str(base / value)


def load_config(path: str) -> WatchConfig:
    """The watch config from a TOML file; ConfigError naming the key when it is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}")
    base = Path(path).resolve().parent
    if not isinstance(data.get("authority"), str):
        raise ConfigError(f"{path}: authority must be a source (a path or a URL)")
    agencies = data.get("agency", [])
    if not isinstance(agencies, list) or not agencies:
        raise ConfigError(f"{path}: at least one [[agency]] with name and source is needed")
    pairs = []
    for number, agency in enumerate(agencies, 1):
        if not isinstance(agency, dict) or not isinstance(agency.get("name"), str) or (
                not isinstance(agency.get("source"), str)):
            raise ConfigError(f"{path}: agency {number} needs a name and a source")
        pairs.append((agency["name"], _path(base, agency["source"])))
    interval = data.get("interval_seconds", 3600)
    if not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError(f"{path}: interval_seconds must be a positive number")
    grace = data.get("grace_working_days", 3)
    if not isinstance(grace, int) or grace < 0:
        raise ConfigError(f"{path}: grace_working_days must be a whole number >= 0")
    database = str(data.get("database", "sqlite:///consistency-watch.db"))
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        database = "sqlite:///" + _path(base, database.removeprefix("sqlite:///"))
    http = {name: data[key] for key, name in (("attempts", "attempts"), (
        "backoff_seconds", "backoff"), ("timeout_seconds", "timeout")) if key in data}
    return WatchConfig(
        authority=_path(base, data["authority"]), agencies=pairs,
        interval_seconds=float(interval), grace_working_days=grace, database=database,
        encoding=data.get("encoding"), allow_unavailable=bool(data.get("allow_unavailable")),
        metrics_port=data.get("metrics_port"), metrics_host=data.get("metrics_host", "127.0.0.1"),
        metrics_textfile=_path(base, data["metrics_textfile"]) if data.get(
            "metrics_textfile") else None,
        report_dir=_path(base, data["report_dir"]) if data.get("report_dir") else None,
        http=http,
    )


class WatchMetrics:
    """The Prometheus view of the latest run, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        prefix = "credgate_consistency_"
        self.runs = Counter(prefix + "runs", "Check runs started", registry=self.registry)
        self.failures = Counter(prefix + "run_failures", "Check runs that failed",
                                registry=self.registry)
        self.last_run = Gauge(prefix + "last_run_timestamp_seconds",
                              "When the last successful run finished", registry=self.registry)
        self.authority = Gauge(prefix + "authority_records", "Records in the authority's feed",
                               registry=self.registry)
        self.records = Gauge(prefix + "agency_records", "Records in the agency's snapshot",
                             ["agency"], registry=self.registry)
        self.up = Gauge(prefix + "agency_up", "1 when the agency's source could be read",
                        ["agency"], registry=self.registry)
        self.findings = Gauge(prefix + "findings", "Findings of the last run, by class",
                              ["agency", "class"], registry=self.registry)
        self.violations = Gauge(prefix + "violations", "Violations found in the last run",
                                ["agency"], registry=self.registry)
        self.new = Gauge(prefix + "new_findings", "Findings not seen in the run before",
                         ["agency"], registry=self.registry)
        self.resolved = Gauge(prefix + "resolved_findings", "Findings gone since the run before",
                              ["agency"], registry=self.registry)

    def text(self) -> str:
        return generate_latest(self.registry).decode("utf-8")


class Watcher:
    """Runs cycles; `run_cycle` is one check, stored and reported."""

    def __init__(self, config: WatchConfig, *, clock: Clock,
                 echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.clock = clock
        self.echo = echo
        self.store = WatchStore(config.database)
        self.metrics = WatchMetrics()

    async def run_cycle(self) -> int:
        """One check; returns 0 (clean), 1 (violations) or 2 (failed, or agency unavailable)."""
        config, metrics = self.config, self.metrics
        started = self.clock.now()
        run_id = await self.store.start_run(started, started)
        metrics.runs.inc()
        try:
            report = await run_check(config.authority, config.agencies, started,
                                     config.grace_working_days, encoding=config.encoding,
                                     http=config.http)
        except CredgateError as exc:
            metrics.failures.inc()
            await self.store.finish_run(run_id, self.clock.now(), authority_records=0,
                                        violations=0, error=exc.description)
            self.echo(f"run {run_id}: failed: {exc.description}")
            self._write_textfile()
            return 2
        for agency in report.agencies:
            delta = await self.store.record_agency(
                run_id, agency.name, agency.findings, records=agency.records,
                violations=agency.violations, unavailable=agency.unavailable)
            self._update(agency.name, agency, len(delta.new), len(delta.resolved))
            if agency.unavailable:
                self.echo(f"run {run_id}: {agency.name}: unavailable: {agency.unavailable}")
                continue
            self.echo(f"run {run_id}: {agency.name}: {agency.records} records, "
                      f"{agency.violations} violations, {len(delta.new)} new, "
                      f"{len(delta.resolved)} resolved")
            for finding in delta.new:
                self.echo(f"  new: {_describe(finding)}")
            for finding in delta.resolved:
                self.echo(f"  resolved: {_describe(finding)}")
        await self.store.finish_run(run_id, self.clock.now(),
                                    authority_records=report.authority_records,
                                    violations=report.violations)
        metrics.authority.set(report.authority_records)
        metrics.last_run.set(self.clock.time())
        self._write_reports(run_id, report)
        self._write_textfile()
        if report.unavailable and not config.allow_unavailable:
            return 2
        return 1 if report.violations else 0

    def _update(self, name: str, agency: Any, new: int, resolved: int) -> None:
        metrics = self.metrics
        metrics.up.labels(name).set(0 if agency.unavailable else 1)
        if agency.unavailable:
            return
        metrics.records.labels(name).set(agency.records)
        metrics.violations.labels(name).set(agency.violations)
        for cls, count in agency.counts().items():
            metrics.findings.labels(name, cls).set(count)
        metrics.new.labels(name).set(new)
        metrics.resolved.labels(name).set(resolved)

    def _write_reports(self, run_id: int, report: Report) -> None:
        if not self.config.report_dir:
            return
        folder = Path(self.config.report_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"run-{run_id}.json").write_text(render_json(report), encoding="utf-8")
        (folder / f"run-{run_id}.html").write_text(render_html(report), encoding="utf-8")

    def _write_textfile(self) -> None:
        if self.config.metrics_textfile:
            write_to_textfile(self.config.metrics_textfile, self.metrics.registry)


def _describe(finding: dict[str, Any]) -> str:
    key = finding.get("key")
    where = (f"{key['kind']} {key['uscc']} {key['decision_number']}" if key
             else f"line {finding.get('line')}")
    return f"{finding['class']} {where}"


async def _serve_metrics(metrics: WatchMetrics, host: str, port: int) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.text().encode(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SourceError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return runner


async def run_watch(config: WatchConfig, *, clock: Clock, once: bool = False,
                    echo: Callable[[str], None] = print) -> int:
    """Run cycles every `interval_seconds` until SIGINT/SIGTERM (or one cycle with `once`)."""
    watcher = Watcher(config, clock=clock, echo=echo)
    await watcher.store.create()
    runner = None
    try:
        if once:
            return await watcher.run_cycle()
        if config.metrics_port is not None:
            runner = await _serve_metrics(watcher.metrics, config.metrics_host,
                                          config.metrics_port)
            echo(f"metrics on http://{config.metrics_host}:{config.metrics_port}/metrics")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            await watcher.run_cycle()
            with contextlib.suppress(TimeoutError):  # the interval passed: next cycle
                await asyncio.wait_for(stop.wait(), timeout=config.interval_seconds)
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await watcher.store.close()

