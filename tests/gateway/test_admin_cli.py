"""`credgate admin ...` on a database: operators, licences, emergency actions, incidents; each audited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from audit.reader import AuditReader
from credcore.db import make_engine
from gateway.cli import main
from tests.policies.support import licence


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["admin", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def admin_entries(db: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        engine = make_engine(db)
        try:
            reader = AuditReader(engine)
            size = await reader.size()
            return [json.loads(leaf) for _, leaf in await reader.leaves(0, size) if leaf] if size else []
        finally:
            await engine.dispose()

    return [e for e in asyncio.run(read()) if e.get("kind") == "admin"]


def test_operator_and_licence_lifecycle(tmp_path: Path) -> None:
    """Create an operator with a licence, replace it, show it, revoke it; every change is audited by the CLI."""
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    first = tmp_path / "first.json"
    first.write_text(json.dumps(licence(datasets={"penalties": "*"})))
    code, out, err = invoke("operator", "create", "--name", "Acme", "--client-id", "acme",
                            "--licence-file", str(first), "--licence-id", "acme-1", "--db", db)
    assert code == 0, err
    created = json.loads(out)
    assert created["client_id"] == "acme" and created["client_secret"] and created["licence_id"] == "acme-1"

    code, out, err = invoke("licence", "put", "acme", "acme-1", "--file", "-", "--db", db,
                            stdin=json.dumps(licence(datasets={"entities": ["uscc", "name"]})))
    assert code == 0, err
    assert json.loads(out)["datasets"] == {"entities": ["name", "uscc"]}

    code, out, _ = invoke("licence", "show", "acme", "--db", db)
    shown = json.loads(out)
    assert shown["status"] == "active" and [lic["licence_id"] for lic in shown["licences"]] == ["acme-1"]

    code, out, _ = invoke("licence", "revoke", "acme", "acme-1", "--reason", "contract ended", "--db", db)
    assert code == 0 and json.loads(out)["status"] == "revoked"
    code, out, _ = invoke("licence", "show", "acme", "acme-1", "--db", db)
    assert json.loads(out)["in_force"] is False

    actions = [(e["action"], e["client_id"]) for e in admin_entries(db)]
    assert actions == [("create_client", "credgate-cli"), ("put_operator", "credgate-cli"),
                       ("put_licence", "credgate-cli"), ("replace_licence", "credgate-cli"),
                       ("revoke_licence", "credgate-cli")]


def test_bad_licence_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    """A bad licence exits 2 with one line naming the field, and stores and audits nothing."""
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    assert invoke("operator", "create", "--name", "Acme", "--client-id", "acme", "--db", db)[0] == 0
    before = len(admin_entries(db))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(licence(quotas={"per_month": -1})))
    code, out, err = invoke("licence", "put", "acme", "acme-1", "--file", str(bad), "--db", db)
    assert code == 2 and "quotas.per_month" in err and out == ""
    code, out, _ = invoke("licence", "show", "acme", "--db", db)
    assert json.loads(out)["licences"] == []
    assert len(admin_entries(db)) == before
    (tmp_path / "junk.json").write_text("{not json")
    code, _, err = invoke("licence", "put", "acme", "acme-1", "--file", str(tmp_path / "junk.json"), "--db", db)
    assert code == 2 and "not valid JSON" in err


def test_suspend_resume_revoke_tokens(tmp_path: Path) -> None:
    """suspend, resume and revoke-tokens change the operator and each leave an audit entry."""
    db = f"sqlite:///{tmp_path / 'gw.db'}"
    assert invoke("operator", "create", "--name", "Acme", "--client-id", "acme", "--db", db)[0] == 0
    code, out, err = invoke("suspend", "acme", "--reason", "leak suspected", "--db", db)
    assert code == 0 and "suspend: acme" in out, err
    assert json.loads(invoke("operator", "show", "acme", "--db", db)[1])["status"] == "suspended"
    assert invoke("resume", "acme", "--db", db)[0] == 0
    assert json.loads(invoke("operator", "show", "acme", "--db", db)[1])["status"] == "active"
    assert invoke("revoke-tokens", "acme", "--db", db)[0] == 0
    assert [e["action"] for e in admin_entries(db)][-3:] == ["suspend", "resume", "revoke_tokens"]
    code, _, err = invoke("suspend", "ghost", "--reason", "x", "--db", db)
    assert code == 2 and "ghost" in err
    code, out, _ = invoke("incidents", "--db", db)
    assert code == 0 and json.loads(out) == []
