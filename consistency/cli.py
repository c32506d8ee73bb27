"""`credgate consistency check|watch` (CONTRACTS section 1). Thin: parse, call, report, exit.

Exit codes of `check`: 0 no violations; 1 violations; 2 a usage error, an unreadable or
malformed authority feed, a date outside the holiday calendar, or an agency that could not be
read (unless --allow-unavailable). Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from consistency.normalize import ValueProblem, parse_date
from consistency.sources import canonical_encoding
from credcore.clock import CST, Clock, system_clock
from credcore.errors import CredgateError

EXIT_OK, EXIT_VIOLATIONS, EXIT_ERROR = 0, 1, 2


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2."""
    click.echo(f"credgate consistency: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def parse_as_of(text: str) -> dt.datetime:
    """An RFC 3339 time, or a date alone meaning 00:00 China Standard Time that day."""
    try:
        return dt.datetime.combine(parse_date(text), dt.time(), CST)
    except ValueProblem:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time or a date") from None
    if when.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs a time zone offset (e.g. +08:00 or Z)")
    return when


def parse_agency(text: str) -> tuple[str, str]:
    name, sep, source = text.partition("=")
    if not sep or not name.strip() or not source.strip():
        raise click.BadParameter(f"{text!r} is not NAME=SRC")
    return name.strip(), source.strip()


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.completed:,} records"), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        def advance(label: str, count: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=None)
            bar.advance(tasks[label], count)

        yield advance


@click.group(name="consistency")
def consistency() -> None:
    """Check that credit service agencies show exactly what the authority discloses."""


@consistency.command("check")
@click.option("--authority", "authority", required=True, metavar="SRC",
              help="The authority's disclosure feed: a JSONL file or an http(s) URL.")
@click.option("--agency", "agencies", multiple=True, required=True, metavar="NAME=SRC",
              help="An agency snapshot (JSONL or CSV file, or URL); repeat for several.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="RFC 3339 time or YYYY-MM-DD (00:00 CST) to judge at; default: now.")
@click.option("--grace-working-days", type=click.IntRange(min=0), default=3, show_default=True,
              help="PRC working days an agency has to take down a record that became due off.")
@click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True), metavar="PATH",
              help="Write the report here instead of to stdout.")
@click.option("--encoding", metavar="ENC",
              help="Encoding of agency files (utf-8, gb18030, ...); default: detected.")
@click.option("--allow-unavailable", is_flag=True,
              help="An agency source that cannot be read does not make the exit code 2.")
@click.pass_context
def check_command(ctx: click.Context, authority: str, agencies: tuple[str, ...],
                  as_of: str | None, grace_working_days: int, fmt: str, output: str | None,
                  encoding: str | None, allow_unavailable: bool) -> None:
    """Compare agency snapshots with the authority's feed (CONTRACTS section 5)."""
    clock: Clock = ctx.obj.get("clock", system_clock) if isinstance(ctx.obj, dict) else (
        system_clock)
    try:
        when = parse_as_of(as_of) if as_of else clock.now()
        pairs = [parse_agency(text) for text in agencies]
        if encoding:
            canonical_encoding(encoding)
    except (click.BadParameter, CredgateError) as exc:
        fail(str(exc))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        fail("two agencies have the same name")
    code = guarded(lambda: _check(authority, pairs, when, grace_working_days, fmt, output,
                                  encoding, allow_unavailable))
    sys.exit(code)


def _check(authority: str, pairs: list[tuple[str, str]], when: dt.datetime, grace: int,
           fmt: str, output: str | None, encoding: str | None, allow_unavailable: bool) -> int:
    from consistency.check import run_check
    from consistency.report import render_html, render_json

    with progress_bar(sys.stderr.isatty()) as progress:
        report = asyncio.run(run_check(authority, pairs, when, grace, encoding=encoding,
                                       progress=progress))
    text = render_html(report) if fmt == "html" else render_json(report)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    for agency in report.unavailable:
        click.echo(f"credgate consistency: agency {agency.name} unavailable: "
                   f"{agency.unavailable}", err=True)
    if report.authority_duplicates:
        click.echo(f"credgate consistency: warning: the authority feed repeats "
                   f"{len(report.authority_duplicates)} key(s); the first record of each was "
                   "used", err=True)
    if report.unavailable and not allow_unavailable:
        return EXIT_ERROR
    return EXIT_VIOLATIONS if report.violations else EXIT_OK


def guarded(run: Callable[[], int]) -> int:
    """Run a command body; every error becomes one line on stderr and exit 2."""
    try:
        return run()
    except CredgateError as exc:
        fail(exc.description)
    except OSError as exc:
        fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}")
    except KeyboardInterrupt:
        fail("interrupted")
    except Exception as exc:  # never a traceback: the last line of defence
        fail(f"internal error: {type(exc).__name__}: {exc}")


@consistency.command("watch")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="TOML file with the sources, schedule, database, metrics.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (for cron jobs and tests).")
@click.pass_context
def watch_command(ctx: click.Context, config_path: str, once: bool) -> None:
    """Run the checks on a schedule, keep their history, expose Prometheus metrics."""
    from consistency.watch import load_config, run_watch

    clock: Clock = ctx.obj.get("clock", system_clock) if isinstance(ctx.obj, dict) else (
        system_clock)

    def body() -> int:
        config = load_config(config_path)
        return asyncio.run(run_watch(config, clock=clock, once=once,
                                     echo=lambda line: click.echo(line)))

    sys.exit(guarded(body))
