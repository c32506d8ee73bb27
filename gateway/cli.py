"""The `credgate` command. Thin: it parses arguments and calls the packages' own functions.
Every failure is one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
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
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Gateway port (0: any free port).")
@click.option("--data-dir", default="./credgate-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
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

        runner, port = await start_site(build_app(settings), settings.server.host, settings.server.port)
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


@main.group()
def audit() -> None:
    """Verify and query the audit log."""


@audit.command("verify")
@click.option("--url", help="Gateway base URL (authenticates as an auditor client).")
@click.option("--db", help="SQLAlchemy URL of the gateway database, e.g. sqlite:///credgate.db.")
@click.option("--key", "keys", multiple=True, help="Trusted note verifier key (repeatable).")
@click.option("--client-id", envvar="CREDGATE_CLIENT_ID", help="Auditor client id (or CREDGATE_CLIENT_ID).")
@click.option("--client-secret", envvar="CREDGATE_CLIENT_SECRET", help="Auditor secret (or CREDGATE_CLIENT_SECRET).")
def audit_verify(url: str | None, db: str | None, keys: tuple[str, ...], client_id: str | None,
                 client_secret: str | None) -> None:
    """Verify every prev_hash link, the Merkle root and the checkpoint signature."""
    from audit.verify import verify_database, verify_remote

    if (url is None) == (db is None):
        fail("give exactly one of --url or --db.")
    try:
        if url is not None:
            if not client_id or not client_secret:
                fail("--url needs auditor credentials: --client-id/--client-secret or CREDGATE_CLIENT_ID/SECRET.")
            report = asyncio.run(verify_remote(url, client_id, client_secret, list(keys)))
        else:
            report = asyncio.run(verify_database(db or "", list(keys)))
    except CredgateError as exc:
        index = getattr(exc, "index", None)
        where = f" (first bad index {index})" if index is not None else ""
        click.echo(f"audit log NOT verified{where}: {exc.description}", err=True)
        sys.exit(1)
    click.echo(report)


@main.group()
def admin() -> None:
    """Emergency response: suspend or resume operators, revoke their tokens."""


def _admin_call(db: str, action: str, client_id: str, reason: str) -> None:
    from gateway.offline import admin_action

    run(admin_action(db, action, client_id, reason))
    click.echo(f"{action}: {client_id}")


@admin.command("suspend")
@click.argument("client_id")
@click.option("--reason", required=True)
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
def admin_suspend(client_id: str, reason: str, db: str) -> None:
    """Suspend an operator on every gateway process within a second."""
    _admin_call(db, "suspend", client_id, reason)


@admin.command("resume")
@click.argument("client_id")
@click.option("--reason", default="resumed")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
def admin_resume(client_id: str, reason: str, db: str) -> None:
    """Lift a suspension (the operator must request new tokens)."""
    _admin_call(db, "resume", client_id, reason)


@admin.command("revoke-tokens")
@click.argument("client_id")
@click.option("--reason", default="tokens revoked")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
def admin_revoke(client_id: str, reason: str, db: str) -> None:
    """Revoke every token issued to an operator so far."""
    _admin_call(db, "revoke-tokens", client_id, reason)


def _mount_optional() -> None:
    with contextlib.suppress(ImportError):
        from consistency.cli import consistency

        main.add_command(consistency)


_mount_optional()
