"""The audit API of CONTRACTS section 4, checked the way an outside auditor would: an RFC 9162
implementation written here (hashlib only, the RFC's recursive MTH) reproduces the signed root
from /audit/entries, every prev_hash link is checked, and the C2SP note signature is verified
with `cryptography` straight from the /audit/key string."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.conftest import wait_for

# --- an independent RFC 9162 / C2SP implementation --------------------------------------------

def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf hashes, by the RFC's own recursion."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


def inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root an inclusion proof leads to."""
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r


def verify_signed_checkpoint(note: str, verifier_key: str) -> tuple[str, int, bytes]:
    """Check a C2SP signed note against `<name>+<hex id>+<base64(0x01||key)>`; (origin, size, root)."""
    name, key_id_hex, key_b64 = verifier_key.strip().split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 0x01 and len(raw) == 33
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert key_id.hex() == key_id_hex
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    verified = False
    for line in signatures.strip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        signer, blob = line[2:].split(" ")
        sig = base64.b64decode(blob)
        if signer == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())  # raises if forged
            verified = True
    assert verified, "no signature by the published key"
    origin, size, root_b64 = text.rstrip("\n").split("\n")[:3]
    assert origin == name
    return origin, int(size), base64.b64decode(root_b64)


# --- helpers --------------------------------------------------------------------------------

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def all_leaves(harness: Any, token: str) -> list[bytes]:
    leaves: list[bytes] = []
    while True:
        resp = await harness.client.get("/audit/entries", params={"start": str(len(leaves)),
                                                                  "end": str(len(leaves) + 1000)},
                                        headers=bearer(token))
        assert resp.status == 200, await resp.text()
        page = (await resp.json())["entries"]
        for item in page:
            assert item["index"] == len(leaves)
            leaves.append(base64.b64decode(item["leaf"], validate=True))
        if len(page) < 1000:
            return leaves


async def traffic(harness: Any, code: str) -> None:
    """A mix of allowed and denied requests, some concurrent."""
    token = await harness.token("op")
    paths = [f"/v1/entities/{code}", f"/v1/entities/{code}/penalties", "/v1/entities/BAD/penalties",
             "/v1/disclosures?limit=5"]
    await asyncio.gather(*(harness.get(p, token) for p in paths * 3))
    await harness.get(f"/v1/entities/{code}", None)


async def served_checkpoint(harness: Any) -> tuple[str, int, bytes]:
    note = await (await harness.client.get("/audit/checkpoint")).text()
    key = await (await harness.client.get("/audit/key")).text()
    return verify_signed_checkpoint(note, key)


# --- tests ----------------------------------------------------------------------------------

async def test_checkpoint_and_key_are_public(gateway: Any) -> None:
    """/audit/checkpoint and /audit/key answer without a token, as text/plain."""
    for path in ("/audit/checkpoint", "/audit/key"):
        resp = await gateway.client.get(path)
        assert resp.status == 200 and resp.content_type == "text/plain", path
    origin, _size, _root = await served_checkpoint(gateway)
    assert origin == gateway.gw.settings.audit.origin


async def test_entries_need_audit_read(gateway: Any) -> None:
    """/audit/entries: no token is 401, an operator's token 403, an auditor's token 200."""
    resp = await gateway.client.get("/audit/entries", params={"start": "0", "end": "1"})
    assert resp.status == 401 and (await resp.json())["error"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    resp = await gateway.client.get("/audit/entries", params={"start": "0", "end": "1"},
                                    headers=bearer(await gateway.token("op")))
    assert resp.status == 403 and (await resp.json())["error"] == "insufficient_scope"
    for path in ("/audit/search", "/audit/proof/inclusion?index=0&tree_size=1",
                 "/audit/proof/consistency?first=1&second=1"):
        assert (await gateway.client.get(path, headers=bearer(await gateway.token("op")))).status == 403, path
    resp = await gateway.client.get("/audit/entries", params={"start": "0", "end": "1"},
                                    headers=bearer(await gateway.token("auditor")))
    assert resp.status == 200


async def test_bad_entry_ranges_are_400(gateway: Any) -> None:
    """Reversed, negative, non-numeric or over-long ranges are refused with a clear error."""
    token = await gateway.token("auditor")
    for params in ({"start": "5", "end": "2"}, {"start": "-1", "end": "2"}, {"start": "x", "end": "2"},
                   {"start": "0", "end": "1001"}, {"start": "0"}, {"start": "0", "end": "9" * 40}):
        resp = await gateway.client.get("/audit/entries", params=params, headers=bearer(token))
        body = await resp.json()
        assert resp.status == 400 and set(body) == {"error", "error_description"}, (params, body)


async def test_independent_rfc9162_reproduces_the_signed_root(gateway: Any, sample_code: str) -> None:
    """An auditor's own MTH over /audit/entries equals the signed root; every prev_hash links."""
    await traffic(gateway, sample_code)
    auditor = await gateway.token("auditor")
    leaves = await all_leaves(gateway, auditor)

    async def covers_all() -> bool:
        return (await served_checkpoint(gateway))[1] >= len(leaves)

    assert await wait_for(covers_all, timeout=5)
    _origin, size, root = await served_checkpoint(gateway)
    leaves = (await all_leaves(gateway, auditor))[:size]
    hashes = [leaf_hash(leaf) for leaf in leaves]
    assert mth(hashes) == root
    previous = "0" * 64
    for index, leaf in enumerate(leaves):
        entry = json.loads(leaf)
        assert rfc8785.dumps(entry) == leaf, f"entry {index} is not RFC 8785 canonical"
        assert entry["prev_hash"] == previous, f"entry {index}: prev_hash does not link"
        previous = hashes[index].hex()
    # The served inclusion proofs lead to the same root.
    for index in (0, size // 2, size - 1):
        resp = await gateway.client.get("/audit/proof/inclusion", params={"index": str(index),
                                                                          "tree_size": str(size)},
                                        headers=bearer(auditor))
        proof = [base64.b64decode(h) for h in (await resp.json())["hashes"]]
        assert inclusion_root(index, size, hashes[index], proof) == root


async def test_a_forged_signature_is_caught_by_the_independent_check(gateway: Any) -> None:
    """Control: the auditor's signature check refuses a checkpoint whose root was altered."""
    note = await (await gateway.client.get("/audit/checkpoint")).text()
    key = await (await gateway.client.get("/audit/key")).text()
    lines = note.split("\n")
    lines[2] = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(InvalidSignature):
        verify_signed_checkpoint("\n".join(lines), key)


async def test_checkpoint_covers_an_entry_within_a_second(make_gateway: Any, sample_code: str) -> None:
    """With the default 1 s checkpoint lag, a new entry is covered by /audit/checkpoint promptly."""
    harness = await make_gateway(audit={"checkpoint_interval": 1.0})
    token = await harness.token("op")
    for _ in range(3):
        index = int((await harness.get(f"/v1/entities/{sample_code}", token)).headers["Audit-Entry"])

        async def covered(index: int = index) -> bool:
            return (await served_checkpoint(harness))[1] > index

        assert await wait_for(covered, timeout=1.5), f"entry {index} not covered"
