"""The `credgate` command. Thin: it parses arguments and calls the packages' own functions.
Every failure is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from credcore.errors import CredgateError


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"credgate: {message}", err=True)
    sys.exit(code)


def run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except CredgateError as exc:
        fail(exc.description)
    except KeyboardInterrupt:
        return None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """credgate: a security gateway for the authorized operation of public credit data."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Gateway port (0: any free port).")
@click.option("--data-dir", default="./credgate-demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def demo(host: str, port: int, data_dir: Path) -> None:
    """Run the reference store and the gateway on loopback with demo clients."""
    from gateway.demo import run_demo

    if host not in ("127.0.0.1", "::1", "localhost"):
        fail("the demo listens on loopback only (127.0.0.1, ::1 or localhost).")
    run(run_demo(host, port, data_dir))


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def serve(config_path: Path) -> None:
    """Run the production gateway (TOML config; CREDGATE_<SECTION>_<KEY> overrides)."""
    from gateway.app import start_site
    from gateway.config import load_settings

    try:
        settings = load_settings(config_path, environ=os.environ)
    except CredgateError as exc:
        fail(exc.description)

    async def serve_forever() -> None:
        from gateway.app import build_app

        try:
            runner, port = await start_site(build_app(settings), settings.server.host, settings.server.port)
        except OSError as exc:
            fail(f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror or exc}.")
        click.echo(f"credgate gateway listening on http://{settings.server.host}:{port}", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    run(serve_forever())


def _mount() -> None:
    """Each package owns its command group; the top-level command only mounts them."""
    from audit.cli import audit
    from consistency.cli import consistency
    from gateway.admin_cli import admin
    from gateway.crosstab_cli import crosstab

    main.add_command(audit)
    main.add_command(admin)
    main.add_command(consistency)
    main.add_command(crosstab)


_mount()
