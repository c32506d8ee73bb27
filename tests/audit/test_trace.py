"""Infringement tracing: operators with different licences receive overlapping records; a leaked,
re-serialized subset from one of them names that operator first, with entries and proofs."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from audit.trace import match, rank, read_leak
from audit.tracing import trace_database
from credcore.canonical import digest_json
from credcore.errors import InvalidParameter
from credstore.generator import Dataset
from gateway.audit_api import READER
from tests.audit.support import checkpoint_fields, credgate, independent_verify_inclusion, rfc_leaf
from tests.conftest import Harness, wait_for
from tests.policies.support import licence

NARROW = ["record_id", "uscc", "subject_name", "decision_number", "fine_amount"]
WIDE = NARROW + ["penalty_content", "authority", "decision_date"]


def rewrite(value: Any, rng: random.Random) -> str:
    """JSON as another tool might write it: shuffled keys, spaces, floats in exponent form, escapes."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return "{ " + " ,\n ".join(f"{json.dumps(k)} : {rewrite(v, rng)}" for k, v in items) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(rewrite(v, rng) for v in value) + "]"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{float(value):.6e}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    return json.dumps(value)


@pytest.fixture
async def leak_setup(make_gateway: Any, dataset: Dataset) -> tuple[Harness, dict[str, list[dict[str, Any]]]]:
    """Three operators read the penalties of the same companies: two with narrow and wide field
    licences, one with every field; returns the records each received."""
    gw = await make_gateway()
    received: dict[str, list[dict[str, Any]]] = {}
    grants: dict[str, dict[str, Any]] = {"narrow": {"penalties": NARROW}, "wide": {"penalties": WIDE},
                                         "full": {"penalties": "*"}}
    codes = sorted({r["uscc"] for r in dataset.records if r["kind"] == "penalty"})[:8]
    for name, datasets in grants.items():
        await gw.add_client(name, licence=licence(datasets=datasets))
        token = await gw.token(name)
        received[name] = []
        for code in codes:
            resp = await gw.get(f"/v1/entities/{code}/penalties", token)
            assert resp.status == 200, await resp.text()
            received[name] += (await resp.json())["records"]
    assert len(received["wide"]) >= 6
    return gw, received


async def covered(gw: Harness) -> None:
    size = await gw.app[READER].size()

    async def ready() -> bool:
        return (await gw.gw.checkpointer.latest()).size >= size

    assert await wait_for(ready, timeout=3)


async def test_a_reserialized_leak_names_its_operator_first(leak_setup: tuple[Harness, dict[str, list[Any]]],
                                                            tmp_path: Path) -> None:
    """A re-serialized subset of what the wide operator received ranks it first by exact digest;
    the full-licence operator follows by record id only; the narrow one cannot have leaked it."""
    gw, received = leak_setup
    await covered(gw)
    rng = random.Random(5)
    subset = rng.sample(received["wide"], k=len(received["wide"]) * 2 // 3)
    leaked = tmp_path / "leak.jsonl"
    leaked.write_text("\n".join(rewrite(r, rng).replace("\n", "") for r in subset) + "\n", encoding="utf-8")
    records = read_leak(leaked.read_bytes())
    assert [r.digests[0] for r in records] == [digest_json(r) for r in subset]
    url = gw.gw.settings.database.url
    report = await trace_database(url, records)
    first, second = report["suspects"][:2]
    assert first["operator"] == "wide" and first["records_matched_exactly"] == len(subset)
    assert second["operator"] == "full" and second["records_matched_exactly"] == 0
    assert second["records_matched_by_id_only"] == len(subset)
    assert "narrow" not in [s["operator"] for s in report["suspects"]]
    assert report["unmatched_lines"] == []
    _, size, root = checkpoint_fields(report["checkpoint"])
    for item in first["entries"]:
        leaf = base64.b64decode(item["leaf"])
        assert json.loads(leaf)["client_id"] == "wide"
        proof = [base64.b64decode(h) for h in item["inclusion"]]
        assert independent_verify_inclusion(rfc_leaf(leaf), item["index"], size, proof, root)


async def test_a_csv_leak_names_its_operator_first(leak_setup: tuple[Harness, dict[str, list[Any]]],
                                                   tmp_path: Path) -> None:
    """The narrow operator's records leaked as CSV (columns reordered, numbers as text) name it first."""
    gw, received = leak_setup
    await covered(gw)
    subset = received["narrow"][1::2]
    out = io.StringIO()
    columns = list(reversed(NARROW))
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for record in subset:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in columns})
    leaked = tmp_path / "leak.csv"
    leaked.write_text(out.getvalue(), encoding="utf-8")
    code, stdout, err = await credgate("audit", "trace", str(leaked), "--db", gw.gw.settings.database.url, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["suspects"][0]["operator"] == "narrow"
    assert report["suspects"][0]["records_matched_exactly"] == len(subset)
    assert all(s["records_matched_exactly"] == 0 for s in report["suspects"][1:])


def test_ranking_prefers_exact_matches_then_ids() -> None:
    """Exact digests outrank id-only matches; an id match needs every leaked field to have been released."""
    records = read_leak(b'{"record_id": "R1", "a": 1}\n{"record_id": "R2", "a": 2, "secret": 3}\n')
    d1 = digest_json({"record_id": "R1", "a": 1})
    entries = {
        0: {"client_id": "x", "decision": "allow", "fields": ["a", "record_id"],
            "records": [{"id": "R1", "sha256": d1}]},
        1: {"client_id": "y", "decision": "allow", "fields": ["a", "record_id"],
            "records": [{"id": "R1", "sha256": "0" * 64}, {"id": "R2", "sha256": "1" * 64}]},
        2: {"client_id": "z", "decision": "allow", "fields": ["a", "record_id", "secret"],
            "records": [{"id": "R2", "sha256": "2" * 64}]},
        3: {"client_id": "w", "decision": "deny", "fields": [], "records": [{"id": "R1", "sha256": d1}]},
    }
    ranking = rank(match(records, entries))
    assert [(s.operator, s.score[:2]) for s in ranking] == [("x", (1, 0)), ("y", (0, 1)), ("z", (0, 1))]


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"{not json\n", b"a,b\n1,2,3\n", b"[1, 2]"])
def test_unreadable_leaks_are_refused(data: bytes) -> None:
    """A leaked file with no record, not UTF-8, or malformed, is refused naming the file."""
    with pytest.raises(InvalidParameter) as exc:
        read_leak(data)
    assert exc.value.parameter == "file"
