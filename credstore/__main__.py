"""`python -m credstore`: build the store if needed, serve it, stop cleanly on SIGINT/SIGTERM.

    python -m credstore --db PATH [--host 127.0.0.1] [--port 0] [--port-file FILE]
                        [--seed N] [--entities N] [--records N] [--reference-date YYYY-MM-DD]
                        [--today YYYY-MM-DD]

With `--port 0` the system picks a free port; `--port-file` then tells a parent process which
one. The file is written whole (temporary file, then rename) only once the socket listens, and
removed on a clean stop, so its presence means "listening on this port". Bad arguments exit 2
with one line on stderr; a store that cannot be built or a port that cannot be bound exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import NoReturn

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from credcore.clock import cst_date, system_clock
from credcore.errors import ConfigError
from credstore.app import make_app
from credstore.db import ensure_store
from credstore.generator import DatasetSpec

log = logging.getLogger("credstore")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: a parent process logs it as it is.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _port(raw: str) -> int:
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {raw!r}")
    return int(raw)


def _iso_date(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {raw!r}") from exc


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = DatasetSpec()
    parser = _Parser(prog="python -m credstore", description="Serve the reference credit store.")
    parser.add_argument("--db", required=True, type=Path, help="SQLite file of the store")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback!)")
    parser.add_argument("--port", type=_port, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--port-file", type=Path, help="write the bound port here")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--entities", type=int, default=defaults.entities)
    parser.add_argument("--records", type=int, default=defaults.records)
    parser.add_argument("--reference-date", type=_iso_date, default=defaults.reference_date,
                        help="the dataset's 'now' (it decides expiries and removals)")
    parser.add_argument("--today", type=_iso_date,
                        help="serve as if this CST date were today (default: the real date)")
    args = parser.parse_args(argv)
    args.spec = DatasetSpec(args.seed, args.entities, args.records, args.reference_date)
    try:
        args.spec.validate()
    except ValueError as exc:
        parser.error(str(exc))
    return args


def write_port_file(path: Path, port: int) -> None:
    """Write atomically: a reader polling for the file never sees it half written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{port}\n", encoding="ascii")
    os.replace(temporary, path)


async def serve(args: argparse.Namespace) -> None:
    today: Callable[[], date] = (
        (lambda: args.today) if args.today else (lambda: cst_date(system_clock.now()))
    )
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if await ensure_store(args.db, args.spec):
        spec = args.spec
        log.info("built the store at %s: seed %d, %d entities, %d records, as of %s",
                 args.db, spec.seed, spec.entities, spec.records, spec.reference_date)
    runner = web.AppRunner(make_app(args.db, today=today), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = int(runner.addresses[0][1])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.port_file:
            write_port_file(args.port_file, port)
        log.info("serving on http://%s:%d", args.host, port)
        try:
            await stop.wait()
        finally:
            if args.port_file:
                args.port_file.unlink(missing_ok=True)
    finally:
        await runner.cleanup()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="credstore: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(serve(args))
    except (ConfigError, OSError, SQLAlchemyError) as exc:
        log.error("cannot serve the store: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
