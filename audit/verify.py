"""`credgate audit verify`: check a whole log, from its database or from a gateway, in one pass.

What is checked (the rules are those of audit/logcheck.py and CONTRACTS.md section 4):
1. every stored checkpoint is signed by a key valid when it was stored (audit/keys.py);
2. every entry, in one pass: canonical leaf, `prev_hash` link, stored leaf hash, no missing
   row; pruned entries link through their kept hash and are covered by a retention event;
3. the Merkle root at the size of EVERY stored checkpoint (and of every checkpoint the auditor
   saved, `--checkpoint`) equals the signed root: all of them are prefixes of the one current
   tree, which is what consistency from each checkpoint to the current one means;
4. the log is not shorter than any checkpoint (truncated or rolled back), and agrees with
   its head row;
5. with `--witness`/`--min-witnesses`: a checkpoint carries cosignatures from N of the trusted
   witnesses (C2SP tlog-cosignature), and it is one of the checkpoints checked above.
The first problem by index is reported, with its kind. Large logs are checked in aligned chunks
by this process (in a thread) and by `jobs - 1` worker processes together, each reading its own
chunks straight from the database (audit/scan.py); the workers start while this process reads
the checkpoints.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from audit import tables
from audit.auditor import auditor_headers
from audit.checkpoint import Checkpoint
from audit.cosignature import CosignatureVerifier, require_cosignatures
from audit.keys import LogKey, always_valid, load_keys, verify_checkpoint_at
from audit.logcheck import ChunkReport, LogMerger, Row, check_chunk_fast, chunk_ranges, sizes_in
from audit.rfc9162 import EMPTY_ROOT
from audit.scan import Source, Task, Worker, WorkerFailed, check_range, default_jobs
from credcore.db import make_engine, reading
from credcore.errors import ConfigError, VerificationError

PAGE = 1000
# Small enough that the lanes finish together (the last chunk is ~0.1 s of one core), large
# enough that a chunk's fixed costs (a connection, a query, a report) stay below 1%.
CHUNK = 1 << 13
PARALLEL_FROM = 100_000  # smaller logs are checked in this process: workers cost more to start
IN_FLIGHT = 2  # tasks queued at each worker, so it never waits for the event loop between two


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    note: str
    ts: float | None  # when it was stored (epoch seconds); None for a checkpoint from elsewhere
    cosignatures: tuple[str, ...] = ()


@dataclass
class Findings:
    """Problems found, each with the index it is reported at; the first by index wins."""

    problems: list[tuple[float, VerificationError]] = field(default_factory=list)

    def add(self, where: float, error: VerificationError) -> None:
        self.problems.append((where, error))

    def raise_first(self) -> None:
        if self.problems:
            raise min(self.problems, key=lambda p: p[0])[1]


def witness_verifiers(keys: Sequence[str]) -> list[CosignatureVerifier]:
    try:
        return [CosignatureVerifier.from_key(k) for k in keys if k.strip()]
    except VerificationError as exc:
        raise ConfigError(f"the witness key is malformed: {exc.description}") from exc


def _checked_checkpoints(history: Sequence[StoredCheckpoint], keys: Sequence[LogKey],
                         findings: Findings) -> list[Checkpoint]:
    """Verify each checkpoint's signature (by a key valid when it was stored) and format."""
    good: list[Checkpoint] = []
    for item in history:
        try:
            cp = verify_checkpoint_at(item.note, keys, item.ts)
        except VerificationError as exc:
            findings.add(item.size - 0.5, VerificationError(
                f"checkpoint of size {item.size}: forged or signed by an unknown key: {exc.description}"))
            continue
        if cp.size != item.size:
            findings.add(min(cp.size, item.size) - 0.5, VerificationError(
                f"checkpoint stored as size {item.size} says size {cp.size}: it was moved or forged"))
            continue
        good.append(cp)
    return sorted(good, key=lambda cp: cp.size)


def _compare_roots(merger: LogMerger, good: Sequence[Checkpoint], findings: Findings) -> None:
    """Each checkpoint's root against the tree; damage lies after the last one that matched."""
    matched = 0
    for cp in good:
        size = cp.size
        root = merger.roots.get(size) if size else EMPTY_ROOT
        if root is None:
            continue  # beyond what was checked (an earlier error stopped the scan, or truncation)
        if root != cp.root:
            findings.add(matched, VerificationError(
                f"entry {matched}: the log is inconsistent with the checkpoint of size {size} (it matches the one of "
                f"size {matched}): entries {matched}..{size - 1} were rewritten, e.g. rolled back and re-grown",
                index=matched))
            return
        matched = size


def _final_checks(merger: LogMerger, good: Sequence[Checkpoint], findings: Findings) -> None:
    n = merger.size
    longest = max((cp.size for cp in good), default=0)
    if longest > n:
        findings.add(n, VerificationError(
            f"entry {n}: log truncated/rolled back: a checkpoint covers {longest} entries but the log has {n}",
            index=n))
    pruned = merger.first_unexplained_prune()
    if pruned is not None:
        findings.add(pruned, VerificationError(
            f"entry {pruned}: its payload was removed (leaf null) but no retention event covers it: "
            "pruned outside `credgate audit prune`", index=pruned))


def _witnessed(history: Sequence[StoredCheckpoint], good: Sequence[Checkpoint], merger: LogMerger,
               witnesses: Sequence[CosignatureVerifier], minimum: int, now: float | None) -> str:
    if minimum <= 0:
        return ""
    if minimum > len(witnesses):
        raise ConfigError(f"--min-witnesses {minimum} is more than the {len(witnesses)} --witness keys given")
    last_error: VerificationError | None = None
    checked = {(cp.size, cp.root) for cp in good}
    for item in sorted(history, key=lambda h: h.size, reverse=True):
        if (item.size, merger.roots.get(item.size)) not in checked:
            continue
        try:
            cosigned = require_cosignatures(item.note + "".join(item.cosignatures), witnesses, minimum, now)
        except VerificationError as exc:
            last_error = last_error or exc
            continue
        names = ", ".join(sorted({c.name for c in cosigned}))
        return f"; the checkpoint of size {item.size} is cosigned by {len(cosigned)} witness(es) ({names})"
    raise VerificationError(f"no checkpoint is cosigned by {minimum} of the trusted witnesses: "
                            f"{last_error.description if last_error else 'none carries cosignatures'}")


def _report(merger: LogMerger, good: Sequence[Checkpoint], witnessed: str) -> str:
    latest = good[-1] if good else None
    pruned = sum(b - a for a, b in merger.pruned)
    tail = (f"the Merkle root of the first {latest.size} entries matches the signed checkpoint "
            f"({base64.b64encode(latest.root).decode()}); " if latest else "")
    return (
        f"audit log verified: {merger.size} entries ({pruned} pruned); every prev_hash link holds; {tail}"
        f"{len(good)} checkpoint(s) checked, each consistent with the current tree{witnessed}"
    )


def _source(url: str) -> Source:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return "sqlite", parsed.database or ""
    return "postgresql", parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def _start_workers(count: int) -> list[Worker]:
    workers: list[Worker] = []
    try:
        for _ in range(count):
            workers.append(await Worker.start())
    except WorkerFailed:
        await _close(workers)
        return []
    return workers


async def _close(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.close() for w in workers))


class _Dispatch:
    """Hands chunk tasks to the lanes in index order and keeps their reports. Once a chunk
    reports an error no later chunk is handed out: every earlier one already was, and the first
    error by index is the one reported."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._tasks = iter(tasks)
        self._stopped = False
        self.reports: dict[int, ChunkReport] = {}

    def take(self) -> Task | None:
        return None if self._stopped else next(self._tasks, None)

    def put(self, report: ChunkReport) -> None:
        self.reports[report.lo] = report
        self._stopped = self._stopped or report.error is not None


async def _local_lane(source: Source, dispatch: _Dispatch) -> None:
    while (task := dispatch.take()) is not None:
        dispatch.put(await asyncio.to_thread(check_range, source, *task))


async def _worker_lane(worker: Worker, source: Source, dispatch: _Dispatch) -> None:
    in_flight = 0
    while True:
        while in_flight < IN_FLIGHT and (task := dispatch.take()) is not None:
            await worker.send(source, task)
            in_flight += 1
        if not in_flight:
            return
        dispatch.put(await worker.receive())
        in_flight -= 1


async def _all_or_first_error(coroutines: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run every coroutine; at the first exception cancel the others and raise it as it is."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error


async def _scan_database(source: Source, n: int, sizes: Sequence[int], workers: Sequence[Worker],
                         chunk: int) -> tuple[LogMerger, Findings]:
    wanted = sorted({s for s in sizes if 0 < s <= n} | ({n} if n else set()))
    tasks: list[Task] = [(lo, hi, sizes_in(wanted, lo, hi), n) for lo, hi in chunk_ranges(n, chunk)]
    if workers:
        dispatch = _Dispatch(tasks)
        try:
            await _all_or_first_error([_local_lane(source, dispatch)]
                                      + [_worker_lane(w, source, dispatch) for w in workers])
            return _merge(tasks, dispatch.reports, chunk)
        except WorkerFailed:  # e.g. killed: check everything here
            pass
    dispatch = _Dispatch(tasks)
    await _local_lane(source, dispatch)
    return _merge(tasks, dispatch.reports, chunk)


def _merge(tasks: Sequence[Task], reports: dict[int, ChunkReport], chunk: int) -> tuple[LogMerger, Findings]:
    """Fold the reports in index order, up to the first error."""
    merger, findings = LogMerger(chunk), Findings()
    for lo, *_ in tasks:
        report = reports[lo]
        merger.add(report)
        if report.error is not None:
            index, message = report.error
            findings.add(index, VerificationError(message, index=index))
            break
    return merger, findings


async def verify_database(url: str, keys: Sequence[str] = (), *, witnesses: Sequence[str] = (),
                          min_witnesses: int = 0, saved: Sequence[str] = (), jobs: int | None = None,
                          chunk_size: int = CHUNK, parallel_from: int = PARALLEL_FROM) -> str:
    """Verify the log stored at `url`; the report line, or VerificationError at the first problem.

    Logs of `parallel_from` entries or more are checked by this process and `jobs - 1` worker
    processes together, one aligned chunk of `chunk_size` entries (a power of two) at a time."""
    jobs = jobs or default_jobs()
    workers: list[Worker] = []
    engine = make_engine(url, read_only=True)
    try:
        try:
            async with reading(engine) as conn:
                head = (await conn.execute(select(tables.head.c.size).where(tables.head.c.id == 1))).scalar()
                top = (await conn.execute(select(func.max(tables.entries.c.idx)))).scalar()
                n = max(int(head or 0), int(top) + 1 if top is not None else 0)
                if jobs > 1 and n >= parallel_from:
                    workers = await _start_workers(jobs - 1)  # they start up while we read the rest
                trusted = always_valid(keys) if keys else await load_keys(conn)
                if not trusted:
                    raise VerificationError("no verifier key: pass --key or keep audit_keys in the database")
                c = tables.checkpoints
                rows = (await conn.execute(select(c.c.size, c.c.note, c.c.ts_us).order_by(c.c.size))).all()
                cosigs: dict[int, list[str]] = {}
                if min_witnesses:
                    for r in await conn.execute(select(tables.cosignatures.c.size, tables.cosignatures.c.line)):
                        cosigs.setdefault(int(r.size), []).append(str(r.line))
        except OSError as exc:
            raise ConfigError(f"cannot read the database: {exc}") from exc
        finally:
            await engine.dispose()
        history = [StoredCheckpoint(int(r.size), str(r.note), int(r.ts_us) / 1e6 if not keys else None,
                                    tuple(cosigs.get(int(r.size), ()))) for r in rows]
        history += [StoredCheckpoint(_size_of(note), note, None) for note in saved]
        if not rows:
            raise VerificationError("the log has no signed checkpoint yet")
        findings = Findings()
        good = _checked_checkpoints(history, trusted, findings)
        merger, scan_findings = await _scan_database(_source(url), n, [cp.size for cp in good], workers, chunk_size)
    finally:
        await _close(workers)
    findings.problems += scan_findings.problems
    _compare_roots(merger, good, findings)
    if not scan_findings.problems:
        _final_checks(merger, good, findings)
        if head is not None and int(head) != merger.size:
            findings.add(min(int(head), merger.size), VerificationError(
                f"entry {min(int(head), merger.size)}: the head row records {head} entries but {merger.size} are "
                "stored: rows were deleted at the end or inserted after it", index=min(int(head), merger.size)))
    findings.raise_first()
    witnessed = _witnessed(history, good, merger, witness_verifiers(witnesses), min_witnesses, None)
    return _report(merger, good, witnessed)


def _size_of(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() else 0


async def check_stream(rows: AsyncIterator[Row], sizes: Sequence[int], findings: Findings,
                       chunk: int = 1 << 13) -> LogMerger:
    """Check a log read in order from `rows` (e.g. pages of a gateway), in this process."""
    merger = LogMerger(chunk)
    buffer: list[Row] = []
    lo = 0
    wanted = sorted(set(sizes))

    def run(hi: int, rows_: list[Row]) -> bool:
        report = check_chunk_fast(rows_, lo, hi, sizes_in(wanted + [hi], lo, hi))
        merger.add(report)
        if report.error is not None:
            findings.add(report.error[0], VerificationError(report.error[1], index=report.error[0]))
            return False
        return True

    async for row in rows:
        buffer.append(row)
        if row[0] >= lo + chunk:  # have the lookahead row: check [lo, lo + chunk)
            if not run(lo + chunk, buffer):
                return merger
            buffer = [r for r in buffer if r[0] >= lo + chunk - 2]
            lo += chunk
    if buffer and buffer[-1][0] >= lo:
        run(buffer[-1][0] + 1, buffer)
    return merger


async def _served_rows(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> AsyncIterator[Row]:
    start = 0
    while True:
        params = {"start": str(start), "end": str(start + PAGE)}
        async with session.get(f"{base}/audit/entries", params=params, headers=headers) as resp:
            if resp.status != 200:
                raise ConfigError(f"the gateway refused /audit/entries ({resp.status}).")
            page = (await resp.json())["entries"]
        for item in page:
            leaf = item.get("leaf")
            stored = item.get("leaf_hash")
            yield (int(item["index"]), base64.b64decode(leaf, validate=True) if leaf is not None else None,
                   base64.b64decode(stored, validate=True) if stored else None)
        if len(page) < PAGE:
            return
        start += PAGE


async def verify_remote(url: str, client_id: str, client_secret: str, keys: Sequence[str] = (), *,
                        witnesses: Sequence[str] = (), min_witnesses: int = 0, saved: Sequence[str] = (),
                        clock_time: float | None = None) -> str:
    """Verify the log a gateway serves, as an auditor client; the report line or VerificationError."""
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=600)
    findings = Findings()
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            auth = await auditor_headers(session, base, client_id, client_secret)
            async with session.get(f"{base}/audit/checkpoint") as resp:
                note = await resp.text()
            trusted = always_valid(keys) if keys else await _served_keys(session, base)
            history = [StoredCheckpoint(_size_of(note), note, clock_time)]
            history += [StoredCheckpoint(_size_of(s), s, None) for s in saved]
            good = _checked_checkpoints(history, trusted, findings)
            findings.raise_first()
            merger = await check_stream(_served_rows(session, base, auth),
                                        [cp.size for cp in good], findings)
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {base}: {exc}") from exc
    except (KeyError, ValueError, TypeError, binascii.Error) as exc:
        raise VerificationError(f"the gateway's answer is malformed: {exc}") from exc
    _compare_roots(merger, good, findings)
    if not findings.problems:
        _final_checks(merger, good, findings)
    findings.raise_first()
    witnessed = _witnessed(history, good, merger, witness_verifiers(witnesses), min_witnesses, clock_time)
    return _report(merger, good, witnessed)


async def _served_keys(session: aiohttp.ClientSession, base: str) -> list[LogKey]:
    async with session.get(f"{base}/audit/keys") as resp:
        if resp.status == 200:
            body: Any = await resp.json()
            return [LogKey.from_json(item) for item in body.get("keys", [])]
    async with session.get(f"{base}/audit/key") as resp:
        return always_valid([(await resp.text()).strip()])
