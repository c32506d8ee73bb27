"""`credgate admin ...`: emergency response from the command line (mounted by the top-level command)."""

from __future__ import annotations

import asyncio
import sys

import click

from credcore.errors import CredgateError


def run(coro: object) -> None:
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except CredgateError as exc:
        click.echo(f"credgate: {exc.description}", err=True)
        sys.exit(2)


@click.group()
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


