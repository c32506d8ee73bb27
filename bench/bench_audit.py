"""Audit log benchmark: append, verify, search and proofs, in one run.

    python bench/bench_audit.py [--entries 1000000] [--quick] [--data-dir DIR] [--keep]
                                [--no-pg] [--duration 5] [--rounds 3] [--jobs N]

1. generate: an N-entry log (default 1,000,000) written straight into SQLite by bulk inserts
   (no HTTP): realistic access entries (50 operators, 20,000 companies, three years of time,
   released-record digests), chained, with the tree nodes, the search index rows and a signed
   checkpoint every 4,096 entries; also loaded into a fresh PostgreSQL database when one is
   reachable (127.0.0.1:5432, as the tests use).
2. append: the group-commit writer (AuditWriter on SQLite WAL, each batch durable before any
   caller hears of it: one fsync of the WAL per batch; 2,048 concurrent appenders) against raw
   batched inserts of the same rows (sqlite3 executemany, same schema, same batch size,
   synchronous=FULL, a commit per batch), in alternating rounds, with the process's heap settled
   as a serving gateway settles it (gc.freeze); the median ratio is held against the bar 0.5.
3. verify: `audit verify --db` on the N-entry log (this process and worker processes; bar 200,000
   entries/s), with the CPU time it took per entry (this process and its reaped workers).
4. search: "who accessed company X in the last 6 months" for 200 random companies through
   AuditReader.search (p50/p99/max; bar 100 ms), with the query plans of SQLite and PostgreSQL.
5. proofs: `credgate serve` on the N-entry log, an auditor token, and wrk (or the Python load
   generator) on /audit/proof/inclusion at random indices (bar 2,000/s). With 2+ CPUs the
   gateway is pinned to CPU 0 and the load generator to CPU 1.
Numbers are printed and written to bench/results/audit-<time>.json. `--quick` makes a 50,000
entry log and shortens every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from sqlalchemy import text  # noqa: E402

from audit import tables  # noqa: E402
from audit.chain import GENESIS_PREV, encode_entry  # noqa: E402
from audit.checkpoint import Checkpoint, sign_checkpoint  # noqa: E402
from audit.note import generate_signer  # noqa: E402
from audit.reader import AuditReader, search_statement  # noqa: E402
from audit.rfc9162 import Frontier  # noqa: E402
from audit.scan import default_jobs  # noqa: E402
from audit.search import parse_search  # noqa: E402
from audit.verify import PARALLEL_FROM, verify_database  # noqa: E402
from audit.writer import AuditWriter, record_index_rows  # noqa: E402
from credcore.codes import USCC_ALPHABET, uscc_check_char  # noqa: E402
from credcore.db import WAL_CHECKPOINT_PAGES, make_engine  # noqa: E402

RESULTS = HERE / "results"
ORIGIN = "bench.credgate/audit"
END = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SPAN = dt.timedelta(days=3 * 365)
CHECKPOINT_EVERY = 4096
BARS = {"append_ratio": 0.5, "verify_per_s": 200_000, "search_p99_ms": 100.0, "proofs_per_s": 2000}
PATHS = ("penalties", "licences", "")
DATASETS = {"penalties": "penalties", "licences": "licences", "": "entities"}


# --------------------------------------------------------------------------------- data

def companies(n: int, rng: random.Random) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        body = "91" + "".join(rng.choice("0123456789") for _ in range(6)) + "".join(
            rng.choice(USCC_ALPHABET) for _ in range(9))
        out.add(body + uscc_check_char(body))
    return sorted(out)


def make_entry(n: int, total: int, codes: list[str], rng: random.Random) -> dict[str, Any]:
    """An access entry shaped like the gateway's (gateway/release.py), time rising over three years."""
    when = END - SPAN + SPAN * (n / total) + dt.timedelta(microseconds=rng.randrange(1000))
    code = codes[int(rng.paretovariate(1.2) * 7) % len(codes)] if n % 3 else rng.choice(codes)
    suffix = PATHS[n % 3]
    operator = f"op-{rng.randrange(50):04d}"
    allowed = rng.random() < 0.9
    records = [{"id": f"CF-{rng.randrange(10**6):06d}", "sha256": hashlib.sha256(rng.randbytes(8)).hexdigest()}
               for _ in range(rng.randrange(1, 4))] if allowed else []
    return {
        "kind": "access", "time": when.isoformat().replace("+00:00", "Z"), "client_id": operator,
        "request": {"method": "GET", "path": f"/v1/entities/{code}" + (f"/{suffix}" if suffix else ""),
                    "query": "", "purpose": "credit_check", "purpose_declared": True},
        "uscc": [code], "dataset": DATASETS[suffix], "decision": "allow" if allowed else "deny",
        "reason": f"licence {operator}-L1 allows {DATASETS[suffix]} for credit_check" if allowed
        else "The data set is outside the operator's licence.",
        "licence": f"{operator}-L1", "rule": [f"{operator}-L1", DATASETS[suffix], "credit_check"],
        "status": 200 if allowed else 403, "error": None if allowed else "insufficient_scope",
        "fields": ["authority", "decision_date", "decision_number", "fine_amount", "kind", "record_id", "uscc"]
        if allowed else [],
        "stripped": ["legal_representative_id_number"] if allowed else [],
        "records": records, "body_sha256": hashlib.sha256(rng.randbytes(8)).hexdigest(),
        "trace_id": rng.randbytes(16).hex(),
    }


def ts_us(entry: dict[str, Any]) -> int:
    return int(dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp() * 1_000_000)


async def create_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.create_schema)
    finally:
        await engine.dispose()


def generate(path: Path, total: int, seed: int = 7) -> dict[str, Any]:
    """Bulk-load an N-entry log into SQLite; returns what later phases need."""
    started = time.perf_counter()
    asyncio.run(create_schema(f"sqlite:///{path}"))
    rng = random.Random(seed)
    codes = companies(20_000, rng)
    signer = generate_signer(ORIGIN, token_bytes=lambda k: bytes(range(k)))
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("BEGIN")
    con.execute("INSERT INTO audit_keys (key_id, name, private_key, verifier_key, not_before_us, not_after_us, active)"
                " VALUES (?, ?, ?, ?, ?, NULL, 1)", (signer.key_id.hex(), ORIGIN, signer.private_key_seed,
                                                      signer.verifier_key, int((END - SPAN).timestamp() * 1e6) - 1))
    frontier, prev = Frontier(), GENESIS_PREV
    rows: list[tuple[Any, ...]] = []
    subjects: list[tuple[Any, ...]] = []
    released: list[tuple[Any, ...]] = []
    nodes: list[tuple[Any, ...]] = []

    def flush() -> None:
        con.executemany("INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT INTO audit_subjects VALUES (?, ?, ?)", subjects)
        con.executemany("INSERT INTO audit_records VALUES (?, ?, ?, ?)", released)
        con.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", nodes)
        for batch in (rows, subjects, released, nodes):
            batch.clear()

    for n in range(total):
        entry = make_entry(n, total, codes, rng)
        entry["prev_hash"] = prev
        leaf = encode_entry(entry)
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        when = ts_us(entry)
        rows.append((n, leaf, digest, when, entry["client_id"], entry["decision"], entry["status"], "access"))
        subjects.extend((code, n, when) for code in entry["uscc"])
        released.extend((r["idx"], r["pos"], r["sha256"], r["record_id"])
                        for r in record_index_rows(n, entry["records"]))
        nodes.extend((level, index, h) for level, index, h in frontier.append(digest) if level)
        prev = digest.hex()
        if frontier.size % CHECKPOINT_EVERY == 0 or n == total - 1:
            flush()
            note = sign_checkpoint(Checkpoint(ORIGIN, frontier.size, frontier.root()), [signer])
            con.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?)",
                        (frontier.size, frontier.root(), note, ts_us(entry) + 1))
    con.execute("INSERT INTO audit_head VALUES (1, ?, ?)", (total, prev))
    con.execute("COMMIT")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("ANALYZE")
    con.close()
    elapsed = time.perf_counter() - started
    return {"seconds": round(elapsed, 1), "entries": total, "codes": codes, "bytes": path.stat().st_size,
            "verifier_key": signer.verifier_key}


# ------------------------------------------------------------------------------- append

def raw_rows(entries: list[dict[str, Any]]) -> tuple[list[Any], ...]:
    """The rows the writer would write for `entries`, prepared in advance (no timing)."""
    frontier, prev = Frontier(), GENESIS_PREV
    rows, subjects, released, nodes = [], [], [], []
    for n, entry in enumerate(entries):
        leaf = encode_entry({**entry, "prev_hash": prev})
        digest = hashlib.sha256(b"\x00" + leaf).digest()
        when = ts_us(entry)
        rows.append((n, leaf, digest, when, entry["client_id"], entry["decision"], entry["status"], "access"))
        subjects.append([(code, n, when) for code in entry["uscc"]])
        released.append([(r["idx"], r["pos"], r["sha256"], r["record_id"])
                         for r in record_index_rows(n, entry["records"])])
        nodes.append([(level, index, h) for level, index, h in frontier.append(digest) if level])
        prev = digest.hex()
    return rows, subjects, released, nodes


def fresh_db(directory: Path, name: str) -> Path:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (directory / (name + suffix)).unlink()
    asyncio.run(create_schema(f"sqlite:///{path}"))
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("INSERT INTO audit_head VALUES (1, 0, ?)", (GENESIS_PREV,))
    con.close()
    return path


def raw_insert(path: Path, prepared: tuple[list[Any], ...], batch: int) -> float:
    rows, subjects, released, nodes = prepared
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")  # as the writer's engine (credcore/db.py)
    started = time.perf_counter()
    for lo in range(0, len(rows), batch):
        hi = min(lo + batch, len(rows))
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO audit_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows[lo:hi])
        con.executemany("INSERT INTO audit_subjects VALUES (?, ?, ?)", [r for part in subjects[lo:hi] for r in part])
        con.executemany("INSERT INTO audit_records VALUES (?, ?, ?, ?)", [r for part in released[lo:hi] for r in part])
        con.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", [r for part in nodes[lo:hi] for r in part])
        con.execute("UPDATE audit_head SET size = ?, last_hash = ? WHERE id = 1", (hi, rows[hi - 1][2].hex()))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - started
    con.close()
    return len(rows) / elapsed


async def writer_append(path: Path, entries: list[dict[str, Any]], batch: int, concurrency: int) -> float:
    engine = make_engine(f"sqlite:///{path}")
    writer = AuditWriter(engine, max_batch=batch)
    await writer.start()
    todo = iter(entries)

    async def appender() -> None:
        for entry in todo:
            await writer.append(entry)

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await writer.close()
    await engine.dispose()
    return len(entries) / elapsed


def bench_append(directory: Path, count: int, rounds: int, codes: list[str]) -> dict[str, Any]:
    rng = random.Random(11)
    entries = [make_entry(n, count, codes, rng) for n in range(count)]
    prepared = raw_rows(entries)
    writer_rates, raw_rates, ratios = [], [], []
    # The process as a serving gateway runs it (gateway.app.settle_heap): what exists before the
    # run, here the 30,000 entries and their prepared rows, is kept out of the cyclic GC's walks.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)
    try:
        for _ in range(rounds):
            w = asyncio.run(writer_append(fresh_db(directory, "append-writer.db"), entries, 1024, 2048))
            r = raw_insert(fresh_db(directory, "append-raw.db"), prepared, 1024)
            writer_rates.append(w)
            raw_rates.append(r)
            ratios.append(w / r)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    return {"entries": count, "rounds": rounds, "writer_per_s": round(statistics.median(writer_rates)),
            "raw_per_s": round(statistics.median(raw_rates)), "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(x, 3) for x in ratios], "bar": BARS["append_ratio"]}


# ------------------------------------------------------------------------------- verify

def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (verify reaps its workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_verify(url: str, total: int, jobs: int | None) -> dict[str, Any]:
    jobs = jobs or default_jobs()
    load = os.getloadavg()[0]
    cpu = cpu_seconds()
    started = time.perf_counter()
    report = asyncio.run(verify_database(url, jobs=jobs))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    workers = jobs - 1 if total >= PARALLEL_FROM else 0  # smaller logs are checked in this process alone
    return {"entries": total, "seconds": round(elapsed, 2), "per_s": round(total / elapsed), "jobs": workers + 1,
            "workers": workers, "cpu_s": round(cpu, 2), "cpu_us_per_entry": round(cpu / total * 1e6, 2),
            "loadavg": [round(load, 2), round(os.getloadavg()[0], 2)], "report": report,
            "bar": BARS["verify_per_s"]}


# ------------------------------------------------------------------------------- search

SIX_MONTHS = dt.timedelta(days=183)


async def search_latencies(url: str, codes: list[str], samples: int) -> dict[str, Any]:
    engine = make_engine(url)
    reader = AuditReader(engine)
    since = (END - SIX_MONTHS).isoformat()
    rng = random.Random(3)
    chosen = [codes[int(rng.paretovariate(1.2) * 7) % len(codes)] if i % 2 else rng.choice(codes)
              for i in range(samples)]
    times, whole, hits = [], [], []
    try:
        await reader.search(parse_search({"uscc": chosen[0], "since": since}))  # warm the pool
        for code in chosen:
            started = time.perf_counter()
            await reader.search(parse_search({"uscc": code, "since": since}))  # the first page (100)
            times.append((time.perf_counter() - started) * 1000)
            started, cursor, found = time.perf_counter(), "", 0
            while True:  # every hit, 1,000 a page
                page, following = await reader.search(parse_search({"uscc": code, "since": since, "limit": "1000",
                                                                    "cursor": cursor}))
                found += len(page)
                if following is None:
                    break
                cursor = following
            whole.append((time.perf_counter() - started) * 1000)
            hits.append(found)
        query = search_statement(parse_search({"uscc": chosen[0], "since": since}))
        sql = str(query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                plan = [str(r[-1]) for r in await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
            else:
                plan = [str(r[0]) for r in await conn.execute(text(f"EXPLAIN {sql}"))]
    finally:
        await engine.dispose()
    times.sort()
    whole.sort()
    return {"queries": samples, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2), "max_ms": round(times[-1], 2),
            "all_pages_p50_ms": round(statistics.median(whole), 2),
            "all_pages_p99_ms": round(whole[int(0.99 * (len(whole) - 1))], 2),
            "hits_median": statistics.median(hits), "hits_max": max(hits), "plan": plan, "bar": BARS["search_p99_ms"]}


def pg_reachable() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 5432)) == 0


async def load_postgres(path: Path) -> tuple[str, str]:
    """A fresh PostgreSQL database holding the same log (COPY from the SQLite file)."""
    import asyncpg

    name = f"credgate_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    await create_schema(url)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    pg = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database=name)
    try:
        for table, columns in (("audit_entries", [c.name for c in tables.entries.columns]),
                               ("audit_subjects", ["uscc", "idx", "ts_us"]),
                               ("audit_records", ["idx", "pos", "sha256", "record_id"])):
            cur = con.execute(f"SELECT {', '.join(columns)} FROM {table}")
            while batch := cur.fetchmany(50_000):
                await pg.copy_records_to_table(table, records=batch, columns=columns)
        await pg.execute("ANALYZE")
    finally:
        await pg.close()
        con.close()
    return url, name


async def drop_postgres(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# ------------------------------------------------------------------------------- proofs

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def credgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)


def bench_proofs(directory: Path, db: Path, total: int, duration: float, engine: str) -> dict[str, Any]:
    url = f"sqlite:///{db}"
    made = credgate("admin", "client", "create", "--name", "bench-auditor", "--scope", "audit:read", "--db", url)
    if made.returncode != 0:
        raise SystemExit(f"bench: cannot create the auditor client: {made.stderr}")
    client = json.loads(made.stdout)
    port = free_port()
    config = directory / "gateway.toml"
    config.write_text(f'[server]\nport = {port}\n[database]\nurl = "{url}"\n[upstream]\nurl = "http://127.0.0.1:9"\n'
                      f'[audit]\norigin = "{ORIGIN}"\n', encoding="utf-8")
    cpus = os.cpu_count() or 1
    log = directory / "gateway.log"
    server_cpu, load_cpu = (0, 1) if cpus >= 2 else (None, None)

    def pin() -> None:
        os.setsid()
        if server_cpu is not None:
            os.sched_setaffinity(0, {server_cpu})

    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=pin)  # noqa: PLW1509
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"bench: the gateway did not start; see {log}") from None
                time.sleep(0.2)
        request = urllib.request.Request(f"{base}/oauth/token", data=b"grant_type=client_credentials",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=10) as resp:
            token = json.loads(resp.read())["access_token"]
        rng = random.Random(5)
        size = total - total % CHECKPOINT_EVERY or total
        warm_started = time.monotonic()
        while time.monotonic() - warm_started < 180:  # the gateway reads the tree's levels once, at start
            probe = urllib.request.Request(f"{base}/audit/proof/inclusion?index={rng.randrange(size)}&tree_size={size}",
                                           headers={"Authorization": f"Bearer {token}"})
            started = time.monotonic()
            with urllib.request.urlopen(probe, timeout=60):
                pass
            if time.monotonic() - started < 0.05:
                break
        warm_seconds = round(time.monotonic() - warm_started, 1)
        paths = [f"/audit/proof/inclusion?index={rng.randrange(size)}&tree_size={size}" for _ in range(5000)]
        target = loadgen.Target(base, paths, {"Authorization": f"Bearer {token}"})
        loadgen.run(target, engine=engine, connections=16, duration=1.0, cpu=load_cpu)  # warm-up
        result = loadgen.run(target, engine=engine, connections=32, duration=duration, cpu=load_cpu)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    return {"engine": result.engine, "per_s": round(result.rps), "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "non_200": result.non_200, "tree_size": size, "pinned": server_cpu is not None, "warm_s": warm_seconds,
            "bar": BARS["proofs_per_s"]}


# ------------------------------------------------------------------------------- main

def verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW BAR"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 entries and short phases")
    parser.add_argument("--data-dir", type=Path, help="where the databases go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL search plan")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load on the proof endpoint")
    parser.add_argument("--rounds", type=int, default=3, help="append rounds (writer, raw) whose median counts")
    parser.add_argument("--append-entries", type=int, default=30_000)
    parser.add_argument("--jobs", type=int, help="verify processes, this one included (default: one per CPU)")
    parser.add_argument("--engine", default="auto", choices=["auto", "wrk", "python"])
    parser.add_argument("--phases", default="append,verify,search,proofs",
                        help="comma-separated subset of append, verify, search, proofs")
    parser.add_argument("--reuse", action="store_true", help="reuse the log already in --data-dir (same --entries)")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    if args.quick:
        args.entries, args.duration, args.append_entries, args.rounds = 50_000, 2.0, 5_000, 1
    directory = args.data_dir or Path(tempfile.mkdtemp(prefix="credgate-bench-audit-"))
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "log.db"
    reuse = args.reuse and db.exists()
    for suffix in ("", "-wal", "-shm"):
        if not reuse:
            with contextlib.suppress(FileNotFoundError):
                Path(str(db) + suffix).unlink()
    results: dict[str, Any] = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                           "loadavg_start": os.getloadavg()}}
    try:
        codes = companies(20_000, random.Random(7))
        if phases - {"append"} and not reuse:
            print(f"generating a {args.entries:,}-entry log in {db} ...", flush=True)
            gen = generate(db, args.entries)
            codes = gen.pop("codes")
            results["generate"] = gen
            print(f"  {gen['seconds']} s, {gen['bytes'] / 1e6:.0f} MB", flush=True)

        if "append" in phases:
            print(f"append: writer vs raw inserts, {args.append_entries:,} entries x {args.rounds} round(s) ...",
                  flush=True)
            results["append"] = bench_append(directory, args.append_entries, args.rounds, codes)

        if "verify" in phases:
            print("verify ...", flush=True)
            results["verify"] = bench_verify(f"sqlite:///{db}", args.entries, args.jobs)

        if "search" in phases:
            print("search on SQLite ...", flush=True)
            results["search_sqlite"] = asyncio.run(search_latencies(f"sqlite:///{db}", codes, 200))
        if "search" in phases and not args.no_pg and pg_reachable():
            print("search on PostgreSQL (loading the log) ...", flush=True)
            pg_url, pg_name = asyncio.run(load_postgres(db))
            try:
                results["search_postgresql"] = asyncio.run(search_latencies(pg_url, codes, 200))
            finally:
                asyncio.run(drop_postgres(pg_name))

        if "proofs" in phases:
            print("inclusion proofs over HTTP ...", flush=True)
            results["proofs"] = bench_proofs(directory, db, args.entries, args.duration,
                                             loadgen.choose_engine(args.engine))
    finally:
        results["machine"]["loadavg_end"] = os.getloadavg()
        if not args.keep and args.data_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"audit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print()
    if "append" in results:
        a = results["append"]
        print(f"append   writer {a['writer_per_s']:>9,}/s  raw {a['raw_per_s']:,}/s  ratio {a['ratio']:.2f} "
              f"(rounds {a['ratios']})  bar >= {a['bar']}  {verdict(a['ratio'] >= a['bar'])}")
    if "verify" in results:
        v = results["verify"]
        print(f"verify   {v['per_s']:>9,} entries/s ({v['entries']:,} in {v['seconds']} s; {v['jobs']} processes: this "
              f"one and {v['workers']} worker(s); {v['cpu_us_per_entry']} us CPU an entry; load average "
              f"{v['loadavg'][0]} -> {v['loadavg'][1]})  bar >= {v['bar']:,}  {verdict(v['per_s'] >= v['bar'])}")
    for name in ("search_sqlite", "search_postgresql"):
        if name in results:
            s = results[name]
            print(f"{name.replace('search_', 'search   '):<17} first page p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms "
                  f"max {s['max_ms']} ms; every hit p50 {s['all_pages_p50_ms']} ms p99 {s['all_pages_p99_ms']} ms "
                  f"({s['queries']} companies, median {s['hits_median']} hits, max {s['hits_max']})  "
                  f"bar < {s['bar']} ms  {verdict(s['p99_ms'] < s['bar'])}")
            print("         plan: " + " | ".join(s["plan"][:6]))
    if "proofs" in results:
        p = results["proofs"]
        print(f"proofs   {p['per_s']:>9,}/s ({p['engine']}, p99 {p['p99_ms']} ms, non-200 {p['non_200']}, tree "
              f"{p['tree_size']:,})  bar >= {p['bar']:,}  {verdict(p['per_s'] >= p['bar'] and p['non_200'] == 0)}")
    print(f"load average {results['machine']['loadavg_start'][0]:.1f} -> {results['machine']['loadavg_end'][0]:.1f} "
          f"on {os.cpu_count()} CPUs; results in {out}")


if __name__ == "__main__":
    main()
