"""Auditor bundles: `audit export` writes a range with checkpoints, proofs and keys; `audit verify
--bundle` checks it offline; an RFC 9162 verifier with no credgate code checks it too."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audit.bundle import export_bundle, verify_bundle
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.keys import always_valid
from audit.note import generate_signer
from audit.writer import AuditWriter
from credcore.db import make_engine
from credcore.errors import InvalidParameter, VerificationError
from gateway.cli import main
from tests.audit.support import (
    checkpoint_fields,
    entry,
    independent_verify_consistency,
    independent_verify_inclusion,
    rfc_leaf,
)

ORIGIN = "credgate.test/audit"


async def build(url: str) -> str:
    """50 entries, checkpoints at 20 and 50; the verifier key."""
    engine = make_engine(url)
    writer = AuditWriter(engine)
    await writer.start()
    signer = await load_or_create_signer(engine, ORIGIN)
    cp = Checkpointer(engine, signer, origin=ORIGIN)
    for lo, hi in ((0, 20), (20, 50)):
        await asyncio.gather(*(writer.append(entry(n)) for n in range(lo, hi)))
        await cp.sign_latest()
    await writer.close()
    await engine.dispose()
    return signer.verifier_key


async def export(url: str, start: int, end: int) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        return await export_bundle(engine, start, end)
    finally:
        await engine.dispose()


@pytest.fixture
async def log(tmp_path: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    return url, await build(url)


async def test_bundle_verifies_offline_and_with_a_plain_rfc9162_verifier(log: tuple[str, str]) -> None:
    """A bundle of entries 10..29 verifies with credgate and with the independent RFC 9162 checks."""
    url, key = log
    bundle = await export(url, 10, 30)
    assert "entries 10..29" in verify_bundle(bundle)
    assert "entries 10..29" in verify_bundle(bundle, always_valid([key]))
    assert [c["size"] for c in bundle["checkpoints"]] == [50] and bundle["previous"]["index"] == 9
    _, size, root = checkpoint_fields(bundle["checkpoints"][-1]["note"])
    for item in bundle["entries"]:
        leaf = base64.b64decode(item["leaf"])
        assert base64.b64decode(item["leaf_hash"]) == rfc_leaf(leaf)
        proof = [base64.b64decode(h) for h in item["inclusion"]]
        assert independent_verify_inclusion(rfc_leaf(leaf), item["index"], size, proof, root)
    for link, (a, b) in zip(bundle["consistency"], zip(bundle["checkpoints"], bundle["checkpoints"][1:],
                                                        strict=False), strict=False):
        _, m, r1 = checkpoint_fields(a["note"])
        _, n, r2 = checkpoint_fields(b["note"])
        assert independent_verify_consistency(m, n, r1, r2, [base64.b64decode(h) for h in link["hashes"]])


async def test_bundle_from_genesis_and_across_two_checkpoints(log: tuple[str, str]) -> None:
    """Entries 0..19 are proven against the checkpoint of 20 and, by consistency, the one of 50."""
    url, _ = log
    bundle = await export(url, 0, 20)
    assert [c["size"] for c in bundle["checkpoints"]] == [20, 50] and bundle["previous"] is None
    assert len(bundle["consistency"]) == 1
    assert "entries 0..19" in verify_bundle(bundle)


def damage(bundle: dict[str, Any], how: str) -> dict[str, Any]:
    out = copy.deepcopy(bundle)
    entries = out["entries"]
    if how == "edited leaf":
        leaf = json.loads(base64.b64decode(entries[3]["leaf"]))
        leaf["client_id"] = "op-forged"
        entries[3]["leaf"] = base64.b64encode(json.dumps(leaf, sort_keys=True, separators=(",", ":")).encode()).decode()
    elif how == "swapped":
        entries[2]["leaf"], entries[3]["leaf"] = entries[3]["leaf"], entries[2]["leaf"]
    elif how == "dropped":
        del entries[4]
    elif how == "forged root":
        lines = out["checkpoints"][-1]["note"].split("\n")
        lines[2] = "A" * 43 + "="
        out["checkpoints"][-1]["note"] = "\n".join(lines)
    elif how == "other key":
        other = generate_signer(ORIGIN)
        note = out["checkpoints"][-1]["note"]
        out["checkpoints"][-1]["note"] = other.sign(note[: note.rfind("\n\n") + 1])
    elif how == "bad proof":
        entries[5]["inclusion"][0] = base64.b64encode(bytes(32)).decode()
    elif how == "bad consistency":
        out["consistency"][0]["hashes"][0] = base64.b64encode(bytes(32)).decode()
    return out


@pytest.mark.parametrize(("how", "where"), [
    ("edited leaf", "entry 13"), ("swapped", "entry 12"), ("dropped", "not exactly"),
    ("forged root", "does not verify"), ("other key", "no signature by a trusted key"), ("bad proof", "entry 15"),
    ("bad consistency", "consistency"),
])
async def test_damaged_bundles_are_refused(log: tuple[str, str], how: str, where: str) -> None:
    """Each kind of damage to a bundle fails verification, naming where."""
    url, _ = log
    bundle = await export(url, 10, 30) if how != "bad consistency" else await export(url, 0, 20)
    with pytest.raises(VerificationError, match=where):
        verify_bundle(damage(bundle, how))


async def test_export_refuses_ranges_it_cannot_prove(log: tuple[str, str]) -> None:
    """--to beyond the latest checkpoint, or not after --from, is refused naming the option."""
    url, _ = log
    for start, end, name in ((0, 51, "to"), (5, 5, "to"), (-1, 3, "from")):
        with pytest.raises(InvalidParameter) as exc:
            await export(url, start, end)
        assert exc.value.parameter == name


def test_export_and_verify_commands(tmp_path: Path) -> None:
    """`audit export --from --to -o` then `audit verify --bundle` exits 0; a damaged copy exits 1."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    key = asyncio.run(build(url))
    out = tmp_path / "bundle.json"
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "export", "--from", "5", "--to", "45", "--db", url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    ok = runner.invoke(main, ["audit", "verify", "--bundle", str(out), "--key", key])
    assert ok.exit_code == 0 and "bundle verified: entries 5..44" in ok.output, ok.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(damage(json.loads(out.read_text()), "swapped")))
    refused = runner.invoke(main, ["audit", "verify", "--bundle", str(bad)])
    assert refused.exit_code == 1 and "(first bad index 7)" in refused.output, refused.output
