"""The verifier's fast path (audit/logcheck.py `check_chunk_fast`, worker processes of audit/scan.py)
reports exactly what the reference check reports, on intact logs and on every kind of damage,
including leaves the fast path must not take at face value: non-canonical JSON with a correct
hash chain, floats, characters outside the BMP, a `prev_hash` key or text elsewhere in the entry,
and values someone left in the table as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import GENESIS_PREV, chain_entry
from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.logcheck import check_chunk, check_chunk_fast, chunk_ranges, normal_row, sizes_in
from audit.scan import Worker, check_range
from audit.verify import verify_database
from credcore.db import make_engine
from credcore.errors import VerificationError
from tests.audit.support import fill_log, rfc_leaf

ORIGIN = "credgate.test/audit"

# Entries the orjson fast path must hand to the exact RFC 8785 check, or that look like a link.
ODD_ENTRIES: list[dict[str, Any]] = [
    {"amount": 1.5},  # a float: JCS and orjson agree here, the exact check decides
    {"amount": 1e-7, "big": 1e21},
    {"name": "\U0001f600 outside the BMP", "\U0001f600": 1, "\uffff": 2},  # UTF-16 key order
    {"nested": {"prev_hash": "0" * 64}},  # a prev_hash key that is not the entry's
    {"text": '","prev_hash":"' + "0" * 64 + '"'},  # and one in a string value
    {"zh": "上海市浦东新区", "escapes": "tab\tquote\"back\\slash\u0001"},
]


def entries(n: int) -> list[dict[str, Any]]:
    return [{"kind": "access", "n": i, "t": "x" * (i % 5), **ODD_ENTRIES[i % len(ODD_ENTRIES)]} for i in range(n)]


def chained(items: list[dict[str, Any]], raw: dict[int, bytes] | None = None) -> list[bytes]:
    """Leaves linked by prev_hash; `raw[i]` (a function of the prev_hash, via %s) replaces leaf i
    and the chain goes on from its hash, as a forger who re-links every later entry would."""
    leaves, prev = [], GENESIS_PREV
    for i, item in enumerate(items):
        leaf = raw[i].replace(b"PREV", prev.encode()) if raw and i in raw else chain_entry(item, prev)
        leaves.append(leaf)
        prev = rfc_leaf(leaf).hex()
    return leaves


NOT_CANONICAL = [
    b'{ "kind":"access","prev_hash":"PREV"}',  # whitespace
    b'{"prev_hash":"PREV","kind":"access"}',  # keys out of order
    b'{"kind":"access","kind":"access","prev_hash":"PREV"}',  # a duplicated key
    b'{"amount":2.0,"prev_hash":"PREV"}',  # orjson writes 2.0 back; JCS writes 2
    b'{"amount":1e21,"prev_hash":"PREV"}',  # JCS writes 1e+21
    b'{"amount":100000000000000000000.0,"prev_hash":"PREV"}',  # JCS writes 100000000000000000000
    b'{"big":9007199254740993,"prev_hash":"PREV"}',  # beyond 2**53
    b'{"prev_hash":"PREV","s":"\\u0041"}',  # a needless escape
    b'{"\xf0\x9f\x98\x80":1,"\xef\xbf\xbf":2,"prev_hash":"PREV"}',  # code-point order, not UTF-16
    b'{"prev_hash":"PREV"}\n',
    b'["prev_hash","PREV"]',
    b'{"prev_hash":"PREV","s":"\xff"}',  # not UTF-8
]


def test_odd_but_canonical_entries_pass_and_non_canonical_ones_are_named() -> None:
    """Every odd entry is accepted; each non-canonical leaf, correctly hashed and chained, is reported
    at its index as not canonical JSON, by the fast path and the reference alike."""
    items = entries(24)
    leaves = chained(items)
    rows = [(i, leaf, rfc_leaf(leaf)) for i, leaf in enumerate(leaves)]
    assert check_chunk_fast(rows, 0, 24).error is None
    assert check_chunk_fast(rows, 0, 24) == check_chunk(rows, 0, 24)
    for bad in NOT_CANONICAL:
        leaves = chained(items, {9: bad})
        assert b"PREV" not in leaves[9]
        rows = [(i, leaf, rfc_leaf(leaf)) for i, leaf in enumerate(leaves)]
        report = check_chunk_fast(rows, 0, 24)
        assert report == check_chunk(rows, 0, 24)
        assert report.error is not None and report.error[0] == 9 and "not canonical JSON" in report.error[1], bad


def test_a_prev_hash_elsewhere_in_the_entry_is_not_taken_for_the_link() -> None:
    """An entry whose own prev_hash is wrong is reported even when the right value sits in a nested
    object's prev_hash key or inside a string."""
    items = entries(12)
    good = chained(items)
    right = rfc_leaf(good[6]).hex()
    for decoy in ({"a": {"prev_hash": right}}, {"a": f'"prev_hash":"{right}"'}, {"a": ["prev_hash", right]}):
        leaves = chained(items, {7: json.dumps({**decoy, "prev_hash": "f" * 64}, sort_keys=True,
                                               separators=(",", ":")).encode()})
        rows = [(i, leaf, rfc_leaf(leaf)) for i, leaf in enumerate(leaves)]
        report = check_chunk_fast(rows, 0, 12)
        assert report == check_chunk(rows, 0, 12)
        assert report.error is not None and report.error[0] == 7 and "prev_hash mismatch" in report.error[1]


Damage = st.sampled_from(["none", "edit", "edit+hash", "drop", "swap", "prune", "prune bad hash", "text leaf",
                          "text hash", "memoryview", "non-canonical", "duplicate", "insert"])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.sampled_from([1, 2, 4, 8, 16, 64]), Damage, st.data())
def test_fast_check_reports_what_the_reference_reports(n: int, chunk: int, damage: str, data: st.DataObject) -> None:
    """For any damage and any chunking, `check_chunk_fast` on the rows as a driver returns them gives
    the report `check_chunk` gives on the normalised rows."""
    items = entries(n)
    i = data.draw(st.integers(0, n - 1))
    leaves: list[Any] = chained(items, {i: NOT_CANONICAL[i % len(NOT_CANONICAL)]} if damage == "non-canonical"
                                else None)
    stored: list[Any] = [rfc_leaf(leaf) for leaf in leaves]
    index = list(range(n))
    if damage == "edit":
        leaves[i] = leaves[i].replace(b'"n":', b'"m":')
    elif damage == "edit+hash":
        leaves[i] = leaves[i].replace(b'"n":', b'"m":')
        stored[i] = rfc_leaf(leaves[i])
    elif damage == "swap" and i + 1 < n:
        leaves[i], leaves[i + 1], stored[i], stored[i + 1] = leaves[i + 1], leaves[i], stored[i + 1], stored[i]
    elif damage in ("prune", "prune bad hash"):
        leaves[i] = None
        stored[i] = stored[i] if damage == "prune" else stored[i][:31]
    elif damage == "text leaf":
        leaves[i] = leaves[i].decode()
    elif damage == "text hash":
        stored[i] = stored[i].hex()
    elif damage == "memoryview":
        leaves[i] = memoryview(leaves[i])
    elif damage == "insert":
        index = [j + (j >= i) for j in range(n)]  # the rows from i on moved up by one
        leaves.insert(i, chain_entry({"forged": True}, rfc_leaf(leaves[i - 1]).hex() if i else GENESIS_PREV))
        stored.insert(i, rfc_leaf(leaves[i]))
        index.insert(i, i)
        index = sorted(index)
    rows = [(index[j], leaves[j], stored[j]) for j in range(len(index))]
    if damage == "drop":
        del rows[i]
    elif damage == "duplicate":
        rows.insert(i, rows[i])
    total = max(r[0] for r in rows) + 1 if rows else 0
    sizes = list(range(1, total + 1))
    for lo, hi in chunk_ranges(total, chunk):
        context = [r for r in rows if lo - 2 <= r[0] < hi + 1]
        fast = check_chunk_fast(context, lo, hi, sizes_in(sizes, lo, hi), end=total)
        assert fast == check_chunk([normal_row(r) for r in context], lo, hi, sizes_in(sizes, lo, hi), end=total)
        if fast.error:
            break


async def signed_log(url: str, leaves: list[bytes]) -> None:
    await fill_log(url, leaves=leaves)
    engine = make_engine(url)
    try:
        await Checkpointer(engine, await load_or_create_signer(engine, ORIGIN), origin=ORIGIN).sign_latest()
    finally:
        await engine.dispose()


async def outcomes(url: str) -> list[tuple[int | None, str]]:
    """The verdict in this process alone, and with a worker process over 16-entry chunks."""
    found: list[tuple[int | None, str]] = []
    for kw in ({"jobs": 1}, {"jobs": 2, "chunk_size": 16, "parallel_from": 0}):
        try:
            found.append((None, await verify_database(url, **kw)))  # type: ignore[arg-type]
        except VerificationError as exc:
            found.append((exc.index, exc.description))
    return found


async def test_a_rechained_non_canonical_leaf_is_reported_by_the_command(tmp_path: Path) -> None:
    """A database whose entry 40 was rewritten as valid but non-canonical JSON, with its stored hash
    and every later prev_hash re-linked, fails at entry 40 whether workers check it or not."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await signed_log(url, chained(entries(70), {40: b'{"kind":"access","n":40, "prev_hash":"PREV"}'}))
    (one, parallel) = await outcomes(url)
    assert one == parallel
    assert one[0] == 40 and "entry 40: edited: not canonical JSON" in one[1]


async def test_odd_entries_verify_in_workers_as_in_this_process(tmp_path: Path) -> None:
    """Floats, astral characters and decoys verify, in one process and with workers alike."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    await signed_log(url, chained(entries(70)))
    (one, parallel) = await outcomes(url)
    assert one == parallel and one[0] is None and "70 entries" in one[1]


@pytest.mark.postgres
async def test_workers_read_postgresql(pg_url: str) -> None:
    """Workers read a PostgreSQL log themselves and name the same damage (entry 33 edited with its
    stored hash: caught at the next link)."""
    leaves = chained(entries(50))
    leaves[33] = leaves[33].replace(b'"kind":"access"', b'"kind":"accesS"')
    await signed_log(pg_url, leaves)
    (one, parallel) = await outcomes(pg_url)
    assert one == parallel
    assert one[0] == 34 and "entry 34: prev_hash mismatch" in one[1]


async def test_a_worker_answers_in_order_and_reports_errors(tmp_path: Path) -> None:
    """A worker process checks the chunks it is sent, in order, and sends back the exception a
    chunk raised (here: no such database) for this process to raise."""
    path = tmp_path / "audit.db"
    await signed_log(f"sqlite:///{path}", chained(entries(40)))
    worker = await Worker.start()
    try:
        tasks = [(0, 16, [16], 40), (16, 32, [32], 40), (32, 40, [40], 40)]
        for task in tasks:
            await worker.send(("sqlite", str(path)), task)
        for task in tasks:
            assert await worker.receive() == check_range(("sqlite", str(path)), *task)
        await worker.send(("sqlite", str(tmp_path / "missing.db")), tasks[0])
        with pytest.raises(Exception, match="unable to open"):
            await worker.receive()
    finally:
        await worker.close()
    assert worker.proc.returncode == 0


async def test_a_worker_that_dies_is_replaced_by_this_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a worker process dies mid-scan, the whole log is checked again in this process, with the
    same verdict."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    leaves = chained(entries(70))
    leaves[50] = leaves[50].replace(b'"kind":"access"', b'"kind":"accesS"')
    await signed_log(url, leaves)
    receive = Worker.receive

    async def dying(self: Worker) -> Any:
        self.proc.kill()
        return await receive(self)

    monkeypatch.setattr(Worker, "receive", dying)
    with pytest.raises(VerificationError) as exc:
        await verify_database(url, jobs=2, chunk_size=16, parallel_from=0)
    assert exc.value.index == 51 and "prev_hash mismatch" in exc.value.description
