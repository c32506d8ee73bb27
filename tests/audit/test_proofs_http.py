"""The proof endpoints of CONTRACTS section 4 over HTTP: the published vectors, the naive tree for
every index and size, an independent verifier, bad arguments (400 naming them) and access."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.audit_api import READER
from tests.audit.support import (
    checkpoint_fields,
    fill_log,
    independent_verify_consistency,
    independent_verify_inclusion,
    mth,
    path,
    rfc_leaf,
    subproof,
)
from tests.conftest import Harness, wait_for

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "shared" / "data" / "rfc9162-and-signed-note-vectors.json").read_text()
)


def b64s(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


async def get_json(gw: Harness, path_: str, token: str | None) -> tuple[int, Any]:
    resp = await gw.get(path_, token, purpose=None)
    return resp.status, await resp.json()


async def served_leaves(gw: Harness, token: str, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    while len(leaves) < size:
        status, body = await get_json(gw, f"/audit/entries?start={len(leaves)}&end={min(size, len(leaves) + 1000)}",
                                      token)
        assert status == 200, body
        leaves += [base64.b64decode(e["leaf"]) for e in body["entries"]]
    return leaves


async def checkpoint(gw: Harness, at_least: int) -> tuple[str, int, bytes]:
    """The served checkpoint, once it covers at least `at_least` entries."""
    found: list[str] = []

    async def covers() -> bool:
        found[:] = [await (await gw.client.get("/audit/checkpoint")).text()]
        return checkpoint_fields(found[0])[1] >= at_least

    assert await wait_for(covers, timeout=5)
    return checkpoint_fields(found[0])


async def some_traffic(gw: Harness, code: str, n: int) -> None:
    token = await gw.token("op")
    for i in range(n):
        await gw.get(f"/v1/entities/{code}/penalties" if i % 3 else "/v1/entities/BAD", token)


async def test_published_vectors_come_back_from_the_endpoints(make_gateway: Any, tmp_path: Path) -> None:
    """A log whose first leaves are the vector inputs serves the vector proofs byte for byte."""
    url = f"sqlite:///{tmp_path / 'vectors.db'}"
    await fill_log(url, leaves=[bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]])
    gw = await make_gateway(db_url=url)
    token = await gw.token("auditor")
    leaves = await served_leaves(gw, token, 8)
    assert [leaf.hex() for leaf in leaves] == VECTORS["leaf_inputs_hex"]
    for v in VECTORS["inclusion_proofs"]:
        status, body = await get_json(gw, f"/audit/proof/inclusion?index={v['index']}&tree_size={v['tree_size']}",
                                      token)
        assert status == 200 and [h.hex() for h in b64s(body["hashes"])] == v["hashes_hex"], (v, body)
        assert (body["index"], body["tree_size"]) == (v["index"], v["tree_size"])
    for v in VECTORS["consistency_proofs"]:
        status, body = await get_json(gw, f"/audit/proof/consistency?first={v['first']}&second={v['second']}", token)
        assert status == 200 and [h.hex() for h in b64s(body["hashes"])] == v["hashes_hex"], (v, body)
    roots = [bytes.fromhex(h) for h in VECTORS["roots_by_size_hex"]]
    for v in VECTORS["inclusion_proofs"]:
        assert independent_verify_inclusion(bytes.fromhex(VECTORS["leaf_hashes_hex"][v["index"]]), v["index"],
                                            v["tree_size"], [bytes.fromhex(h) for h in v["hashes_hex"]],
                                            roots[v["tree_size"]])


async def test_every_proof_matches_the_naive_tree_and_an_independent_verifier(gateway: Harness,
                                                                              sample_code: str) -> None:
    """For every size up to the log's and every index, the served proofs are RFC 9162's PATH and
    PROOF of the naive tree, and an independent verifier accepts them against signed roots."""
    await some_traffic(gateway, sample_code, 12)
    _, first_size, first_root = await checkpoint(gateway, 12)
    await some_traffic(gateway, sample_code, 10)
    _, size, root = await checkpoint(gateway, first_size + 10)
    token = await gateway.token("auditor")
    hashes = [rfc_leaf(leaf) for leaf in await served_leaves(gateway, token, size)]
    assert mth(hashes[:size]) == root and mth(hashes[:first_size]) == first_root

    async def inclusion(i: int, n: int) -> list[bytes]:
        status, body = await get_json(gateway, f"/audit/proof/inclusion?index={i}&tree_size={n}", token)
        assert status == 200, body
        return b64s(body["hashes"])

    async def consistency(m: int, n: int) -> list[bytes]:
        status, body = await get_json(gateway, f"/audit/proof/consistency?first={m}&second={n}", token)
        assert status == 200, body
        return b64s(body["hashes"])

    for n in range(1, size + 1):
        proofs = await asyncio.gather(*(inclusion(i, n) for i in range(n)))
        assert proofs == [path(i, hashes[:n]) for i in range(n)], n
        links = await asyncio.gather(*(consistency(m, n) for m in range(1, n + 1)))
        assert links == [subproof(m, hashes[:n], True) for m in range(1, n + 1)], n
    for i, proof in enumerate(await asyncio.gather(*(inclusion(i, size) for i in range(size)))):
        assert independent_verify_inclusion(hashes[i], i, size, proof, root), i
    link = await consistency(first_size, size)
    assert independent_verify_consistency(first_size, size, first_root, root, link)
    assert not independent_verify_consistency(first_size, size, root, first_root, link)


BAD = [
    ("/audit/proof/inclusion?index=5&tree_size=3", "index"),
    ("/audit/proof/inclusion?index=-1&tree_size=3", "index"),
    ("/audit/proof/inclusion?index=x&tree_size=3", "index"),
    ("/audit/proof/inclusion?tree_size=3", "index"),
    ("/audit/proof/inclusion?index=0&tree_size=0", "tree_size"),
    ("/audit/proof/inclusion?index=0&tree_size=99999", "tree_size"),
    ("/audit/proof/inclusion?index=0&tree_size=1e3", "tree_size"),
    ("/audit/proof/inclusion?index=0&tree_size=1234567890123456789012", "tree_size"),
    ("/audit/proof/consistency?first=5&second=3", "first"),
    ("/audit/proof/consistency?first=0&second=3", "first"),
    ("/audit/proof/consistency?first=1&second=99999", "second"),
    ("/audit/proof/consistency?first=1", "second"),
    ("/audit/entries?start=5&end=3", "end"),
    ("/audit/entries?start=0&end=5000", "end"),
    ("/audit/entries?start=-1&end=3", "start"),
    ("/audit/search?uscc=91350100M000100Y4X", "uscc"),
    ("/audit/search?decision=maybe", "decision"),
    ("/audit/search?since=yesterday", "since"),
    ("/audit/search?since=2026-01-01T00:00:00", "since"),
    ("/audit/search?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ("/audit/search?cursor=abc", "cursor"),
    ("/audit/search?cursor=-5", "cursor"),
    ("/audit/search?limit=0", "limit"),
    ("/audit/search?limit=5000", "limit"),
    ("/audit/search?record_sha256=xyz", "record_sha256"),
    ("/audit/search?operator=" + "o" * 300, "operator"),
]


async def test_bad_arguments_are_400_naming_the_parameter_and_change_nothing(gateway: Harness,
                                                                             sample_code: str) -> None:
    """Out-of-range, inverted or malformed arguments answer 400 naming the parameter; nothing is written."""
    await some_traffic(gateway, sample_code, 3)
    token = await gateway.token("auditor")
    before = await gateway.gw.checkpointer.latest()
    size_before = await gateway.app[READER].size()
    for url, name in BAD:
        status, body = await get_json(gateway, url, token)
        assert status == 400, (url, body)
        assert body["error"] == "invalid_request" and f"'{name}'" in body["error_description"], (url, body)
    assert await gateway.app[READER].size() == size_before
    assert (await gateway.gw.checkpointer.latest()).size >= before.size


PROTECTED = ["/audit/entries?start=0&end=1", "/audit/proof/inclusion?index=0&tree_size=1",
             "/audit/proof/consistency?first=1&second=1", "/audit/search?decision=allow"]


@pytest.mark.parametrize("url", PROTECTED)
async def test_operators_never_read_the_log(gateway: Harness, url: str) -> None:
    """An operator's data:read token gets 403 on every log-reading endpoint; no token gets 401."""
    status, body = await get_json(gateway, url, await gateway.token("op"))
    assert status == 403 and body["error"] == "insufficient_scope", body
    status, body = await get_json(gateway, url, None)
    assert status == 401 and body["error"] == "invalid_token", body


async def test_checkpoint_and_keys_are_public(gateway: Harness) -> None:
    """The checkpoint, the key and the key history need no token."""
    for url in ("/audit/checkpoint", "/audit/key", "/audit/keys"):
        assert (await gateway.client.get(url)).status == 200, url
    history = await (await gateway.client.get("/audit/keys")).json()
    key = (await (await gateway.client.get("/audit/key")).text()).strip()
    assert [k["verifier_key"] for k in history["keys"]] == [key]
    assert history["keys"][0]["not_after"] is None and history["keys"][0]["not_before"].endswith("Z")
