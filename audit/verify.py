"""`credgate audit verify`: fetch a whole log (from its database or a gateway) and verify it.

The checks themselves are the pure ones of audit/chain.py; this module only fetches. It also
checks every stored checkpoint (database) against the tree, so a log that was rolled back and
re-grown after a checkpoint was signed is caught.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import aiohttp
from sqlalchemy import select

from audit import tables
from audit.chain import verify_chain, verify_log
from audit.checkpoint import parse_checkpoint
from audit.note import NoteVerifier, verify_note
from audit.rfc9162 import Frontier
from credcore.db import make_engine
from credcore.errors import ConfigError, VerificationError

PAGE = 1000


def _verifiers(keys: Sequence[str]) -> list[NoteVerifier]:
    try:
        return [NoteVerifier.from_key(k.strip()) for k in keys if k.strip()]
    except VerificationError as exc:
        raise ConfigError(f"the verifier key is malformed: {exc.description}") from exc


def _report(size: int, note: str, verifiers: Sequence[NoteVerifier], checkpoints: int = 1) -> str:
    cp = parse_checkpoint(verify_note(note, verifiers).text)
    return (
        f"audit log verified: {size} entries; every prev_hash link holds; the Merkle root of the first "
        f"{cp.size} entries matches the signed checkpoint ({base64.b64encode(cp.root).decode()}); "
        f"{checkpoints} checkpoint(s) checked"
    )


def check_history(leaf_hashes: Sequence[bytes], history: Sequence[tuple[int, str]],
                  verifiers: Sequence[NoteVerifier]) -> None:
    """Every stored checkpoint must be signed and must be a prefix of this tree."""
    frontier = Frontier()
    for size, note in sorted(history):
        cp = parse_checkpoint(verify_note(note, verifiers).text)
        if cp.size != size:
            raise VerificationError(f"checkpoint stored as size {size} says size {cp.size}", index=min(size, cp.size))
        if size > len(leaf_hashes):
            raise VerificationError(
                f"log truncated/rolled back: a checkpoint covers {size} entries but the log has {len(leaf_hashes)}",
                index=len(leaf_hashes),
            )
        while frontier.size < size:
            frontier.append(leaf_hashes[frontier.size])
        if frontier.root() != cp.root:
            raise VerificationError(
                f"entry {size - 1}: the log is inconsistent with the checkpoint of size {size}: "
                "entries before it were rewritten",
                index=size - 1,
            )


async def verify_database(url: str, keys: Sequence[str]) -> str:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            if keys:
                verifiers = _verifiers(keys)
            else:
                rows = await conn.execute(select(tables.keys.c.verifier_key))
                verifiers = _verifiers([r.verifier_key for r in rows])
            if not verifiers:
                raise VerificationError("no verifier key: pass --key or keep audit_keys in the database")
            history = [(int(r.size), str(r.note)) for r in await conn.execute(
                select(tables.checkpoints.c.size, tables.checkpoints.c.note).order_by(tables.checkpoints.c.size))]
            if not history:
                raise VerificationError("the log has no signed checkpoint yet")
            result = await conn.stream(select(tables.entries.c.idx, tables.entries.c.leaf).order_by(tables.entries.c.idx))
            leaves: list[bytes] = []
            async for row in result:
                if int(row.idx) != len(leaves):
                    raise VerificationError(f"entry {len(leaves)}: missing (the next stored index is {row.idx})",
                                            index=len(leaves))
                leaves.append(bytes(row.leaf or b""))
    except OSError as exc:
        raise ConfigError(f"cannot read the database {url}: {exc}") from exc
    finally:
        await engine.dispose()
    size = verify_log(leaves, history[-1][1], verifiers)
    check_history(verify_chain(leaves).leaf_hashes, history, verifiers)
    return _report(size, history[-1][1], verifiers, len(history))


async def verify_remote(url: str, client_id: str, client_secret: str, keys: Sequence[str]) -> str:
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(f"{base}/oauth/token", data={"grant_type": "client_credentials", "scope": "audit:read"},
                                    auth=aiohttp.BasicAuth(client_id, client_secret)) as resp:
                if resp.status != 200:
                    raise ConfigError(f"the gateway refused the auditor credentials ({resp.status}).")
                token = (await resp.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{base}/audit/checkpoint") as resp:
                note = await resp.text()
            if not keys:
                async with session.get(f"{base}/audit/key") as resp:
                    keys = [(await resp.text()).strip()]
            verifiers = _verifiers(keys)
            leaves: list[bytes] = []
            while True:
                params = {"start": str(len(leaves)), "end": str(len(leaves) + PAGE)}
                async with session.get(f"{base}/audit/entries", params=params, headers=headers) as resp:
                    if resp.status != 200:
                        raise ConfigError(f"the gateway refused /audit/entries ({resp.status}).")
                    page = (await resp.json())["entries"]
                for item in page:
                    if item["index"] != len(leaves):
                        raise VerificationError(f"entry {len(leaves)}: missing from the served log", index=len(leaves))
                    leaves.append(base64.b64decode(item["leaf"], validate=True))
                if len(page) < PAGE:
                    break
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {base}: {exc}") from exc
    except (KeyError, ValueError, binascii.Error) as exc:
        raise VerificationError(f"the gateway's answer is malformed: {exc}") from exc
    size = verify_log(leaves, note, verifiers)
    return _report(size, note, verifiers)
