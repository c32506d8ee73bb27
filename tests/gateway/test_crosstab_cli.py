"""`credgate crosstab ...` on a gateway database: partner add, link, list, remove, publish, sync failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from audit import tables as audit_tables
from credcore.clock import system_clock
from credcore.db import make_engine
from crosstab import tables
from gateway.crosstab_cli import crosstab
from tests.crosstab.partner_kit import PartnerKit, uscc

SH, JS = "310000", "320000"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        '[upstream]\nurl = "http://127.0.0.1:9"\n'
        f'[crosstab]\nenabled = true\nregion = "{SH}"\ndomestic_regions = "310000,320000"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str, **kwargs: Any) -> Any:
    return CliRunner().invoke(crosstab, list(args), catch_exceptions=False, **kwargs)


def rows(config: Path, table: Any) -> list[Any]:
    """Rows of a table of the gateway database named in `config`."""
    url = config.read_text().split('"')[1]

    async def read() -> list[Any]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(select(table))).all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def audit_actions(config: Path) -> list[str]:
    leaves = [json.loads(row.leaf) for row in rows(config, audit_tables.entries)]
    return [leaf.get("action", leaf["kind"]) for leaf in leaves]


def jwks_file(tmp_path: Path, partner: PartnerKit) -> Path:
    path = tmp_path / f"{partner.region}.jwks.json"
    path.write_text(json.dumps(partner.jwks()), encoding="utf-8")
    return path


def test_partner_add_list_link_remove(config: Path, tmp_path: Path) -> None:
    """The partner life cycle from the command line, each step audited like its API twin."""
    jwks = jwks_file(tmp_path, PartnerKit(JS, system_clock))
    added = run("--config", str(config), "partner", "add", JS, "--name", "Jiangsu", "--jwks", str(jwks),
                "--types", "evaluation,revocation", "--domestic")
    assert added.exit_code == 0, added.output
    creds = json.loads(added.output)
    assert creds["region"] == JS and creds["client_id"] and creds["client_secret"]
    linked = run("--config", str(config), "partner", "link", JS, "--url", "http://127.0.0.1:9",
                 "--client-id", "us", "--client-secret", "s3cret")
    assert linked.exit_code == 0, linked.output
    listed = json.loads(run("--config", str(config), "partner", "list", "--json").output)
    assert [(p["region"], p["client_id"], p["domestic"], p["url"]) for p in listed] == [
        (JS, creds["client_id"], True, "http://127.0.0.1:9")
    ]
    assert "Jiangsu" in run("--config", str(config), "partner", "list").output
    removed = run("--config", str(config), "partner", "remove", JS)
    assert removed.exit_code == 0, removed.output
    assert json.loads(run("--config", str(config), "partner", "list", "--json").output) == []
    assert audit_actions(config) == ["register_partner", "link_partner", "remove_partner"]
    assert "s3cret" not in json.dumps([json.loads(r.leaf) for r in rows(config, audit_tables.entries)])


def test_bad_partner_input_exits_2_and_changes_nothing(config: Path, tmp_path: Path) -> None:
    """A bad region, a missing or private JWKS, an unknown type: one line on stderr, exit 2, nothing written."""
    partner = PartnerKit(JS, system_clock)
    good = jwks_file(tmp_path, partner)
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{**partner.keys[partner.kid].as_dict(private=True), "kid": "k"}]}))
    cases = [
        (["31000X", "--jwks", str(good)], "region"),
        ([JS, "--jwks", str(tmp_path / "missing.json")], "cannot read"),
        ([JS, "--jwks", str(private)], "private"),
        ([JS, "--jwks", str(good), "--types", "gossip"], "record_types"),
    ]
    for args, words in cases:
        result = CliRunner().invoke(crosstab, ["--config", str(config), "partner", "add", *args, "--name", "J"])
        assert result.exit_code == 2, result.output
        assert words in result.output
    assert rows(config, tables.partners) == [] and rows(config, tables.partner_clients) == []


def test_remove_unknown_partner_and_unconfigured_database(config: Path, tmp_path: Path) -> None:
    """Removing a region that is not a partner is a clear error; a database with no region needs --config."""
    result = CliRunner().invoke(crosstab, ["--config", str(config), "partner", "remove", JS])
    assert result.exit_code == 2 and "not a registered partner" in result.output
    result = CliRunner().invoke(crosstab, ["--db", f"sqlite:///{tmp_path / 'empty.db'}", "partner", "list"])
    assert result.exit_code == 2 and "no crosstab region yet" in result.output


def test_sync_with_an_unreachable_partner_exits_1_and_keeps_the_cursor(config: Path, tmp_path: Path) -> None:
    """A partner that cannot be reached fails its sync after the retries; the failure is audited."""
    jwks = jwks_file(tmp_path, PartnerKit(JS, system_clock))
    assert run("--config", str(config), "partner", "add", JS, "--name", "J", "--jwks", str(jwks)).exit_code == 0
    run("--config", str(config), "partner", "link", JS, "--url", "http://127.0.0.1:9", "--client-id", "us",
        "--client-secret", "s")
    result = CliRunner().invoke(crosstab, ["--config", str(config), "sync", "--attempts", "2", "--backoff", "0",
                                           "--timeout", "2"])
    assert result.exit_code == 1, result.output
    assert f"pull {JS}: FAILED" in result.output
    assert rows(config, tables.sync_cursors)[0].after == 0
    assert audit_actions(config)[-1] == "crosstab"
    leaf = json.loads(rows(config, audit_tables.entries)[-1].leaf)
    assert (leaf["exchange"], leaf["decision"], leaf["status"]) == ("sync_pull", "error", 502)


def test_publish_drafts_from_a_file_validates_every_line_first(config: Path, tmp_path: Path) -> None:
    """A file with one bad line publishes nothing and names the line; a good file publishes in order."""
    good = {"type": "evaluation", "sub": uscc("91310000MA1K00001"), "scheme": "tax_credit", "grade": "A",
            "valid_from": "2025-04-01", "valid_until": "2099-03-31", "jti": "eval-1"}
    drafts = tmp_path / "drafts.jsonl"
    drafts.write_text(json.dumps(good) + "\n" + json.dumps({**good, "grade": None, "jti": "eval-2"}) + "\n")
    result = CliRunner().invoke(crosstab, ["--config", str(config), "publish", "--file", str(drafts)])
    assert result.exit_code == 2 and "line 2" in result.output
    assert rows(config, tables.issued) == []
    domestic = {**good, "jti": "eval-2", "domestic_only": True}
    drafts.write_text(json.dumps(good) + "\n" + json.dumps(domestic) + "\n")
    result = run("--config", str(config), "publish", "--file", str(drafts))
    assert result.exit_code == 0, result.output
    assert [(r.seq, r.jti, r.domestic_only) for r in rows(config, tables.issued)] == [
        (1, "eval-1", False), (2, "eval-2", True)]
