"""Auditor bundles: a range of the log with everything needed to check it offline.

Format `credgate-audit-bundle/v1` (JSON; every hash and leaf in standard base64):

    {"format": "credgate-audit-bundle/v1",
     "origin": "<log origin>",
     "hashing": "RFC 9162 2.1.1, SHA-256: leaf hash SHA-256(0x00 || leaf), node SHA-256(0x01 || l || r)",
     "from": I, "to": J,                       # the entries I <= i < J
     "keys": [{"verifier_key", "key_id", "not_before", "not_after"}],   # C2SP note keys, with validity
     "checkpoints": [{"size", "time", "note"}],  # signed C2SP checkpoints, ascending; the last proves
     "consistency": [{"first", "second", "hashes": [...]}],  # RFC 9162 2.1.4 between consecutive ones
     "previous": {"index": I-1, "leaf_hash", "inclusion": [...]} | null,
     "entries": [{"index", "leaf" | null, "leaf_hash", "inclusion": [...]}]}

Checking it needs no credgate code: for each entry, leaf_hash = SHA-256(0x00 || leaf) (a pruned
entry has leaf null and only its hash), and `inclusion` is its RFC 9162 2.1.3 audit path in the
tree whose size and root are lines 2 and 3 of the last checkpoint's note; each consistency proof
joins two checkpoints; each note is verified with a key valid at its time (C2SP signed-note,
Ed25519). credgate's own check (`verify_bundle`) also checks that each leaf is canonical JSON and
that its `prev_hash` is the leaf hash of the entry before it (`previous` for the first).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import tables
from audit.chain import GENESIS_PREV, decode_entry
from audit.checkpoint import Checkpoint
from audit.cosignature import CosignatureVerifier, require_cosignatures
from audit.keys import LogKey, load_keys, verify_checkpoint_at
from audit.reader import AuditReader
from audit.rfc9162 import leaf_hash, verify_consistency, verify_inclusion
from credcore.clock import rfc3339
from credcore.db import reading
from credcore.errors import ConfigError, InvalidParameter, VerificationError

FORMAT = "credgate-audit-bundle/v1"
HASHING = "RFC 9162 2.1.1, SHA-256: leaf hash SHA-256(0x00 || leaf), node SHA-256(0x01 || left || right)"
MAX_ENTRIES = 100_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value).encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise VerificationError(f"bundle: {what} is not base64") from None


async def export_bundle(engine: AsyncEngine, start: int, end: int) -> dict[str, Any]:
    """The bundle of entries start <= i < end, proven against the latest stored checkpoint."""
    if start < 0:
        raise InvalidParameter("from", "--from must be a non-negative index.")
    if end <= start:
        raise InvalidParameter("to", "--to must be greater than --from (it is exclusive).")
    if end - start > MAX_ENTRIES:
        raise InvalidParameter("to", f"a bundle holds at most {MAX_ENTRIES} entries; export several ranges.")
    reader = AuditReader(engine)
    c = tables.checkpoints
    async with reading(engine) as conn:
        history = (await conn.execute(select(c.c.size, c.c.note, c.c.ts_us).order_by(c.c.size))).all()
        keys = await load_keys(conn)
        origin = (await conn.execute(select(tables.keys.c.name).limit(1))).scalar()
    covering = [r for r in history if r.size >= end]
    if not covering:
        latest = history[-1].size if history else 0
        raise InvalidParameter("to", f"--to {end} is beyond the latest signed checkpoint (size {latest}); "
                                     "wait for the next checkpoint.")
    chosen = [covering[0]] if covering[0].size == covering[-1].size else [covering[0], covering[-1]]
    tree_size = chosen[-1].size
    rows: list[tuple[int, bytes | None, bytes]] = []
    for page in range(start, end, 1000):
        rows += await reader.rows(page, min(page + 1000, end))
    if [i for i, _, _ in rows] != list(range(start, end)):
        raise VerificationError(f"entries {start}..{end - 1} are not all stored; run `credgate audit verify`")
    indices = [i for i, _, _ in rows] + ([start - 1] if start else [])
    proofs = await reader.inclusion_proofs(indices, tree_size)
    previous = None
    if start:
        prev_hash = (await reader.get_nodes([(0, start - 1)]))[(0, start - 1)]
        previous = {"index": start - 1, "leaf_hash": _b64(prev_hash),
                    "inclusion": [_b64(h) for h in proofs[start - 1]]}
    consistency = []
    for a, b in zip(chosen, chosen[1:], strict=False):
        hashes = await reader.consistency(a.size, b.size) if a.size else []
        consistency.append({"first": a.size, "second": b.size, "hashes": [_b64(h) for h in hashes]})
    return {
        "format": FORMAT,
        "origin": origin,
        "hashing": HASHING,
        "from": start,
        "to": end,
        "keys": [k.to_json() for k in keys],
        "checkpoints": [{"size": r.size, "time": rfc3339(dt.datetime.fromtimestamp(r.ts_us / 1e6, dt.UTC)),
                         "note": r.note} for r in chosen],
        "consistency": consistency,
        "previous": previous,
        "entries": [{"index": i, "leaf": _b64(leaf) if leaf is not None else None, "leaf_hash": _b64(h),
                     "inclusion": [_b64(p) for p in proofs[i]]} for i, leaf, h in rows],
    }


def _checkpoints(bundle: dict[str, Any], keys: Sequence[LogKey]) -> list[Checkpoint]:
    items = bundle.get("checkpoints")
    if not isinstance(items, list) or not items:
        raise VerificationError("bundle: no checkpoint")
    out = []
    for item in items:
        when = item.get("time")
        try:
            ts = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp() if when else None
        except ValueError:
            raise VerificationError(f"bundle: checkpoint time {when!r} is not RFC 3339") from None
        try:
            cp = verify_checkpoint_at(str(item.get("note")), keys, ts)
        except VerificationError as exc:
            raise VerificationError(f"bundle: checkpoint of size {item.get('size')}: {exc.description}") from None
        out.append(cp)
    if [cp.size for cp in out] != sorted({cp.size for cp in out}):
        raise VerificationError("bundle: checkpoints are not in ascending size order")
    return out


def verify_bundle(bundle: Any, keys: Sequence[LogKey] = (), *, witnesses: Sequence[CosignatureVerifier] = (),
                  min_witnesses: int = 0) -> str:
    """Check a bundle offline; the report line, or VerificationError naming the first bad index."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise VerificationError(f"not a {FORMAT} bundle")
    try:
        trusted = list(keys) or [LogKey.from_json(k) for k in bundle.get("keys") or []]
        if not trusted:
            raise VerificationError("bundle: no verifier key (give --key or include keys)")
        cps = _checkpoints(bundle, trusted)
        links = bundle.get("consistency") or []
        if len(links) != len(cps) - 1:
            raise VerificationError("bundle: one consistency proof is needed between each two checkpoints")
        for a, b, link in zip(cps, cps[1:], links, strict=False):
            if (link.get("first"), link.get("second")) != (a.size, b.size):
                raise VerificationError(f"bundle: the consistency proof is not from {a.size} to {b.size}")
            verify_consistency(a.size, b.size, a.root, b.root, [_unb64(h, "a proof hash") for h in link["hashes"]])
        last = cps[-1]
        start, end = int(bundle["from"]), int(bundle["to"])
        if not 0 <= start < end <= cps[0].size:
            raise VerificationError(f"bundle: the range {start}..{end} is not covered by its first checkpoint")
        prev = GENESIS_PREV
        if start:
            p = bundle.get("previous") or {}
            if p.get("index") != start - 1:
                raise VerificationError(f"bundle: entry {start - 1} (before the range) is not included")
            p_hash = _unb64(p.get("leaf_hash"), "the previous leaf hash")
            verify_inclusion(p_hash, start - 1, last.size, [_unb64(h, "a proof hash") for h in p["inclusion"]],
                             last.root)
            prev = p_hash.hex()
        entries = bundle.get("entries") or []
        if [e.get("index") for e in entries] != list(range(start, end)):
            raise VerificationError(f"bundle: the entries are not exactly {start}..{end - 1} in order")
        pruned = 0
        for item in entries:
            i = item["index"]
            try:
                if item.get("leaf") is None:
                    digest = _unb64(item.get("leaf_hash"), f"entry {i}'s leaf hash")
                    pruned += 1
                else:
                    leaf = _unb64(item["leaf"], f"entry {i}'s leaf")
                    digest = leaf_hash(leaf)
                    entry = decode_entry(leaf)
                    if entry.get("prev_hash") != prev:
                        raise VerificationError(f"prev_hash is not the leaf hash of entry {i - 1}")
                verify_inclusion(digest, i, last.size, [_unb64(h, "a proof hash") for h in item["inclusion"]],
                                 last.root)
            except VerificationError as exc:
                raise VerificationError(f"entry {i}: {exc.description}", index=i) from None
            prev = digest.hex()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VerificationError(f"bundle: malformed ({type(exc).__name__}: {exc})") from None
    witnessed = ""
    if min_witnesses:
        note = bundle["checkpoints"][-1]["note"]
        cosigned = require_cosignatures(note, witnesses, min_witnesses)
        witnessed = f"; cosigned by {', '.join(sorted({c.name for c in cosigned}))}"
    return (f"bundle verified: entries {start}..{end - 1} ({pruned} pruned) are canonical, linked and included "
            f"in the signed tree of size {last.size}; {len(cps)} checkpoint(s), consistent{witnessed}")


def load_bundle(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the bundle is not JSON: {exc}") from exc
