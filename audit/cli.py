"""`credgate audit ...`: verify and query the audit log (mounted by the top-level command)."""

from __future__ import annotations

import asyncio
import sys

import click

from credcore.errors import CredgateError


def fail(message: str, code: int = 2) -> None:
    click.echo(f"credgate: {message}", err=True)
    sys.exit(code)


@click.group()
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


