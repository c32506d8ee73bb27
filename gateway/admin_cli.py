"""`credgate admin ...`: emergency response and licence management from the command line.

Each command works on the gateway database (`--db`, an SQLAlchemy URL) through the admin API's
own functions (gateway/offline.py): audited, validated the same way, and picked up by every
running gateway process within a second. Output is JSON on stdout; a failure is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from credcore.errors import CredgateError

DB_HELP = "SQLAlchemy URL of the gateway database (sqlite:///path or postgresql://...)."


def run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except CredgateError as exc:
        click.echo(f"credgate: {exc.description}", err=True)
        sys.exit(2)


def emit(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        click.echo(f"credgate: cannot read {path}: {exc.strerror}.", err=True)
        sys.exit(2)
    try:
        return json.loads(text)
    except ValueError as exc:
        click.echo(f"credgate: {path} is not valid JSON: {exc}.", err=True)
        sys.exit(2)


@click.group()
def admin() -> None:
    """Emergency response and licences: suspend, resume, revoke tokens, manage licences."""


def _admin_call(db: str, action: str, client_id: str, reason: str) -> None:
    from gateway.offline import admin_action

    index = run(admin_action(db, action, client_id, reason))
    click.echo(f"{action}: {client_id} (audit entry {index})")


@admin.command("suspend")
@click.argument("client_id")
@click.option("--reason", required=True)
@click.option("--db", required=True, help=DB_HELP)
def admin_suspend(client_id: str, reason: str, db: str) -> None:
    """Suspend an operator on every gateway process within a second and revoke its tokens."""
    _admin_call(db, "suspend", client_id, reason)


@admin.command("resume")
@click.argument("client_id")
@click.option("--reason", default="resumed")
@click.option("--db", required=True, help=DB_HELP)
def admin_resume(client_id: str, reason: str, db: str) -> None:
    """Lift a suspension (the operator must request new tokens)."""
    _admin_call(db, "resume", client_id, reason)


@admin.command("revoke-tokens")
@click.argument("client_id")
@click.option("--reason", default="tokens revoked")
@click.option("--db", required=True, help=DB_HELP)
def admin_revoke(client_id: str, reason: str, db: str) -> None:
    """Revoke every token issued to an operator so far."""
    _admin_call(db, "revoke-tokens", client_id, reason)


@admin.group("licence")
def licence() -> None:
    """Put, show or revoke an operator's licences."""


@licence.command("put")
@click.argument("client_id")
@click.argument("licence_id")
@click.option("--file", "path", required=True, help="The licence JSON ('-' for stdin).")
@click.option("--db", required=True, help=DB_HELP)
def licence_put(client_id: str, licence_id: str, path: str, db: str) -> None:
    """Create or replace a licence (refused whole, naming the field, when any part is invalid)."""
    from gateway import offline

    emit(run(offline.licence_put(db, client_id, licence_id, _read_json(path))))


@licence.command("show")
@click.argument("client_id")
@click.argument("licence_id", required=False)
@click.option("--db", required=True, help=DB_HELP)
def licence_show(client_id: str, licence_id: str | None, db: str) -> None:
    """Show an operator with its licences, or one licence."""
    from gateway import offline

    view = run(offline.operator_show(db, client_id))
    if licence_id is None:
        emit(view)
        return
    for item in view["licences"]:
        if item["licence_id"] == licence_id:
            emit(item)
            return
    click.echo(f"credgate: no licence '{licence_id}' of operator '{client_id}'.", err=True)
    sys.exit(2)


@licence.command("revoke")
@click.argument("client_id")
@click.argument("licence_id")
@click.option("--reason", required=True)
@click.option("--db", required=True, help=DB_HELP)
def licence_revoke(client_id: str, licence_id: str, reason: str, db: str) -> None:
    """Revoke a licence for good (it stays on record; a new licence needs a new id)."""
    from gateway import offline

    emit(run(offline.licence_revoke(db, client_id, licence_id, reason)))


@admin.group("operator")
def operator() -> None:
    """Create or show operators."""


@operator.command("create")
@click.option("--name", required=True)
@click.option("--client-id", default=None, help="Chosen client_id (default: generated).")
@click.option("--org-uscc", default=None, help="The operator's own Unified Social Credit Code.")
@click.option("--licence-file", default=None, help="Its first licence (JSON file, '-' for stdin).")
@click.option("--licence-id", default=None)
@click.option("--db", required=True, help=DB_HELP)
def operator_create(name: str, client_id: str | None, org_uscc: str | None, licence_file: str | None,
                    licence_id: str | None, db: str) -> None:
    """Create an operator's OAuth client (scope data:read); prints its client_id and secret once."""
    from gateway import offline

    body = _read_json(licence_file) if licence_file else None
    emit(run(offline.operator_create(db, name=name, client_id=client_id, org_uscc=org_uscc, licence=body,
                                     licence_id=licence_id)))


@operator.command("show")
@click.argument("client_id")
@click.option("--db", required=True, help=DB_HELP)
def operator_show(client_id: str, db: str) -> None:
    """Show an operator, its status and its licences."""
    from gateway import offline

    emit(run(offline.operator_show(db, client_id)))


@admin.command("incidents")
@click.option("--client-id", default=None)
@click.option("--db", required=True, help=DB_HELP)
def incidents(client_id: str | None, db: str) -> None:
    """List over-scope incidents (automatic suspensions and why)."""
    from gateway import offline

    emit(run(offline.incidents(db, client_id)))


@admin.group("client")
def client() -> None:
    """Staff clients (admin, auditor)."""


@client.command("create")
@click.option("--name", required=True)
@click.option("--scope", required=True, type=click.Choice(["admin", "audit:read", "admin audit:read"]))
@click.option("--client-id", default=None, help="Chosen client_id (default: generated).")
@click.option("--db", required=True, help=DB_HELP)
def client_create(name: str, scope: str, client_id: str | None, db: str) -> None:
    """Create an admin or auditor OAuth client (the first admin of a new deployment); prints its secret once."""
    from gateway import offline

    emit(run(offline.client_create(db, name=name, scope=scope, client_id=client_id)))
