"""A new deployment gets its first admin from the command line, then works through the API."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from gateway.cli import main


async def test_first_admin_from_the_cli_can_use_the_admin_api(make_gateway, tmp_path) -> None:
    """`credgate admin client create --scope admin` makes a client whose token passes the admin API."""
    db = f"sqlite:///{tmp_path / 'gateway.db'}"
    # The command runs its own event loop, so it runs in a worker thread here.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["admin", "client", "create", "--name", "Security team", "--scope", "admin", "--db", db],
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert not created["client_id"].startswith("-")

    harness = await make_gateway(db_url=db, operators=False)
    harness.secrets[created["client_id"]] = created["client_secret"]
    token = await harness.token(created["client_id"])
    resp = await harness.client.post(
        "/admin/operators", json={"name": "New Operator Co."}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 201, await resp.text()


def test_staff_client_scope_is_checked(tmp_path) -> None:
    """A staff client with a data or unknown scope is refused with exit 2 and nothing is created."""
    db = f"sqlite:///{tmp_path / 'gateway.db'}"
    result = CliRunner().invoke(main, ["admin", "client", "create", "--name", "x", "--scope", "data:read", "--db", db])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
