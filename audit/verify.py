"""`credgate audit verify`: fetch a whole log (from its database or a gateway) and verify it.

The checks themselves are the pure ones of audit/chain.py; this module only fetches. It also
checks every stored checkpoint (database) against the tree, so a log that was rolled back and
re-grown after a checkpoint was signed is caught.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from urllib.parse import quote

import aiohttp
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

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


def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _linked_hash(leaf: bytes) -> str | None:
    """The prev_hash a leaf claims, read leniently (the leaf may be the damaged one)."""
    try:
        value = json.loads(leaf)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    prev = value.get("prev_hash") if isinstance(value, dict) else None
    return prev if isinstance(prev, str) else None


def _edited(index: int) -> VerificationError:
    return VerificationError(
        f"entry {index}: edited: its bytes no longer hash to the leaf hash recorded when it was appended",
        index=index,
    )


def _diagnose(leaves: Sequence[bytes], error: VerificationError, edited: int | None = None) -> VerificationError:
    """Sharpen a broken-link error into the first bad index and the kind of damage, where the
    neighbouring entries show it: an entry whose stored leaf hash no longer matches its bytes
    was edited; an entry that links past its predecessor follows an inserted one; an entry that
    links to its successor was swapped with it."""
    bad = error.index
    if edited is not None and (bad is None or edited < bad):
        return _edited(edited)
    if bad is None or bad >= len(leaves):
        return error
    claimed = _linked_hash(leaves[bad])
    if claimed is not None and bad >= 2 and claimed == _leaf_hash(leaves[bad - 2]).hex():
        return VerificationError(
            f"entry {bad - 1}: inserted: entry {bad} links to entry {bad - 2}, so entry {bad - 1} was put "
            "into the log after the fact",
            index=bad - 1,
        )
    if claimed is not None and bad + 1 < len(leaves) and claimed == _leaf_hash(leaves[bad + 1]).hex():
        return VerificationError(
            f"entry {bad}: reordered: it links to entry {bad + 1}, which must come before it (the two were swapped)",
            index=bad,
        )
    return error


def _verify_leaves(leaves: Sequence[bytes], note: str, verifiers: Sequence[NoteVerifier],
                   edited: int | None = None) -> int:
    try:
        verify_chain(leaves)
    except VerificationError as exc:
        raise _diagnose(leaves, exc, edited) from None
    if edited is not None:
        raise _edited(edited)
    return verify_log(leaves, note, verifiers)


async def verify_database(url: str, keys: Sequence[str]) -> str:
    """Verify the log in a gateway database (read-only: a live gateway is not held up)."""
    engine = make_engine(url, read_only=True)
    edited: int | None = None
    try:
        async with engine.connect() as conn:
            stored_keys = [str(r.verifier_key) for r in await conn.execute(select(tables.keys.c.verifier_key))]
            verifiers = _verifiers(list(keys) or stored_keys)
            if not verifiers:
                raise VerificationError("no verifier key: pass --key or keep audit_keys in the database")
            history = [(int(r.size), str(r.note)) for r in await conn.execute(
                select(tables.checkpoints.c.size, tables.checkpoints.c.note).order_by(tables.checkpoints.c.size))]
            if not history:
                raise VerificationError("the log has no signed checkpoint yet")
            query = select(tables.entries.c.idx, tables.entries.c.leaf, tables.entries.c.leaf_hash)
            result = await conn.stream(query.order_by(tables.entries.c.idx))
            leaves: list[bytes] = []
            async for row in result:
                if int(row.idx) != len(leaves):
                    raise VerificationError(f"entry {len(leaves)}: missing (the next stored index is {row.idx})",
                                            index=len(leaves))
                leaf = bytes(row.leaf or b"")
                if edited is None and bytes(row.leaf_hash or b"") != _leaf_hash(leaf):
                    edited = len(leaves)
                leaves.append(leaf)
    except (OSError, SQLAlchemyError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise ConfigError(f"cannot read the audit log from {_safe(url)}: {reason}") from exc
    finally:
        await engine.dispose()
    size = _verify_leaves(leaves, history[-1][1], verifiers, edited)
    check_history(verify_chain(leaves).leaf_hashes, history, verifiers)
    report = _report(size, history[-1][1], verifiers, len(history))
    if not keys:
        report += ("; trusting the verifier key(s) stored in this database: pass --key with the published key "
                   "to rule out a database rewritten together with its keys")
    return report


def _safe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing
        return "the database"


async def verify_remote(url: str, client_id: str, client_secret: str, keys: Sequence[str]) -> str:
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}".encode())
            form = {"grant_type": "client_credentials", "scope": "audit:read"}
            async with session.post(f"{base}/oauth/token", data=form,
                                    headers={"Authorization": f"Basic {basic.decode()}"}) as resp:
                if resp.status != 200:
                    raise ConfigError(f"the gateway refused the auditor credentials ({resp.status}).")
                token = (await resp.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{base}/audit/checkpoint") as resp:
                if resp.status != 200:
                    raise ConfigError(f"the gateway did not serve /audit/checkpoint ({resp.status}).")
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
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the gateway at {base}: {exc or type(exc).__name__}") from exc
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise VerificationError(f"the gateway's answer is malformed: {exc}") from exc
    size = _verify_leaves(leaves, note, verifiers)
    return _report(size, note, verifiers)
