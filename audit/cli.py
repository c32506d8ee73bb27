"""`credgate audit ...`: verify, query, trace, export and maintain the audit log (mounted by the
top-level command). Thin: each command parses its options and calls the package's functions.
Exit codes: 0 done; 1 the log (or bundle) failed verification; 2 usage or configuration error."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from credcore.clock import CST, rfc3339
from credcore.errors import CredgateError, InvalidParameter, VerificationError

T = TypeVar("T")
DEFAULT_ORIGIN = "credgate.local/audit"


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"credgate: {message}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; a verification failure exits 1 naming the first bad index, any other error 2."""
    try:
        return asyncio.run(coro)
    except VerificationError as exc:
        where = f" (first bad index {exc.index})" if exc.index is not None else ""
        click.echo(f"audit log NOT verified{where}: {exc.description}", err=True)
        sys.exit(1)
    except CredgateError as exc:
        fail(exc.description)


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """RFC 3339, or a YYYY-MM-DD date (midnight, China Standard Time)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), CST)
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{name} must be an RFC 3339 time or a YYYY-MM-DD date, not {value!r}.")
    if when.tzinfo is None:
        fail(f"{name} must carry a timezone offset.")
    return when


def one_source(url: str | None, db: str | None) -> None:
    if (url is None) == (db is None):
        fail("give exactly one of --url or --db.")


def credentials(client_id: str | None, client_secret: str | None) -> tuple[str, str]:
    if not client_id or not client_secret:
        fail("--url needs auditor credentials: --client-id/--client-secret or CREDGATE_CLIENT_ID/SECRET.")
    return client_id, client_secret


URL = click.option("--url", help="Gateway base URL (authenticates as an auditor client).")
DB = click.option("--db", help="SQLAlchemy URL of the gateway database, e.g. sqlite:///credgate.db.")
CLIENT_ID = click.option("--client-id", envvar="CREDGATE_CLIENT_ID", help="Auditor client id (or CREDGATE_CLIENT_ID).")
CLIENT_SECRET = click.option("--client-secret", envvar="CREDGATE_CLIENT_SECRET",
                             help="Auditor secret (or CREDGATE_CLIENT_SECRET).")


@click.group()
def audit() -> None:
    """Verify, query, trace, export and maintain the audit log."""


@audit.command("verify")
@URL
@DB
@click.option("--bundle", "bundle_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify an auditor bundle offline (from `credgate audit export`).")
@click.option("--key", "keys", multiple=True,
              help="Trusted note verifier key (repeatable); default: the log's key history.")
@click.option("--witness", "witnesses", multiple=True, help="Trusted witness (cosigner) key, repeatable.")
@click.option("--min-witnesses", default=0, type=click.IntRange(0),
              help="Cosignatures required (N of the --witness keys).")
@click.option("--checkpoint", "saved", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint saved earlier; the log must still be consistent with it (repeatable).")
@click.option("--jobs", type=click.IntRange(1, 64),
              help="Processes checking --db, this one included (default: one per CPU).")
@CLIENT_ID
@CLIENT_SECRET
def audit_verify(url: str | None, db: str | None, bundle_path: Path | None, keys: tuple[str, ...],
                 witnesses: tuple[str, ...], min_witnesses: int, saved: tuple[Path, ...], jobs: int | None,
                 client_id: str | None, client_secret: str | None) -> None:
    """Verify every entry and link, the Merkle root at every checkpoint, and the signatures."""
    from audit.bundle import load_bundle, verify_bundle
    from audit.keys import always_valid
    from audit.verify import verify_database, verify_remote, witness_verifiers

    if sum(x is not None for x in (url, db, bundle_path)) != 1:
        fail("give exactly one of --url, --db or --bundle.")
    if min_witnesses > len(witnesses):
        fail(f"--min-witnesses {min_witnesses} needs at least that many --witness keys.")
    notes = [read_text(p, "--checkpoint") for p in saved]
    if bundle_path is not None:
        text = read_text(bundle_path, "--bundle")

        async def offline() -> str:
            return verify_bundle(load_bundle(text), always_valid(keys), witnesses=witness_verifiers(witnesses),
                                 min_witnesses=min_witnesses)

        report = run(offline())
    elif url is not None:
        cid, secret = credentials(client_id, client_secret)
        report = run(verify_remote(url, cid, secret, list(keys), witnesses=witnesses, min_witnesses=min_witnesses,
                                   saved=notes, clock_time=time.time()))
    else:
        report = run(verify_database(db or "", list(keys), witnesses=witnesses, min_witnesses=min_witnesses,
                                     saved=notes, jobs=jobs))
    click.echo(report)


def read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{option}: cannot read {path}: {exc}")


@audit.command("search")
@URL
@DB
@click.option("--uscc", help="Entries that concern this company.")
@click.option("--operator", help="Entries of this operator (client_id).")
@click.option("--decision", type=click.Choice(["allow", "deny", "error"]))
@click.option("--since", help="From this time (RFC 3339, or YYYY-MM-DD in CST).")
@click.option("--until", help="Before this time (RFC 3339, or YYYY-MM-DD in CST).")
@click.option("--record", "record_sha256", help="Entries that released a record with this canonical SHA-256.")
@click.option("--record-id", help="Entries that released the record with this id.")
@click.option("--cursor", default="", help="Continue after this cursor (the 'next' of a previous page).")
@click.option("--limit", default=100, type=click.IntRange(1, 1000), show_default=True)
@click.option("--all", "follow", is_flag=True, help="Follow the cursor to the last page.")
@CLIENT_ID
@CLIENT_SECRET
def audit_search(url: str | None, db: str | None, uscc: str | None, operator: str | None, decision: str | None,
                 since: str | None, until: str | None, record_sha256: str | None, record_id: str | None,
                 cursor: str, limit: int, follow: bool, client_id: str | None, client_secret: str | None) -> None:
    """Search the log; prints one JSON line per hit ({"index", "entry"}) and the next cursor on stderr."""
    from audit.search import search_database, search_remote

    one_source(url, db)
    params = {"uscc": uscc, "operator": operator, "decision": decision, "since": since, "until": until,
              "record_sha256": record_sha256, "record_id": record_id}
    filters = {k: v for k, v in params.items() if v}
    for name in ("since", "until"):
        when = parse_time(filters.get(name), f"--{name}")
        if when is not None:
            filters[name] = rfc3339(when)

    async def pages() -> None:
        nonlocal cursor
        while True:
            if db is not None:
                hits, following = await search_database(db, filters, cursor, limit)
            else:
                cid, secret = credentials(client_id, client_secret)
                hits, following = await search_remote(url or "", cid, secret, filters, cursor, limit)
            for index, entry in hits:
                click.echo(json.dumps({"index": index, "entry": entry}, ensure_ascii=False, sort_keys=True))
            if not following or not follow:
                click.echo(f"next: {following or '-'}", err=True)
                return
            cursor = following

    run(pages())


@audit.command("trace")
@click.argument("leaked_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@URL
@DB
@click.option("--format", "kind", type=click.Choice(["auto", "json", "csv"]), default="auto", show_default=True,
              help="How the leaked file is written (JSON Lines / JSON, or CSV).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report (entries, leaves, proofs) as JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON report here.")
@CLIENT_ID
@CLIENT_SECRET
def audit_trace(leaked_file: Path, url: str | None, db: str | None, kind: str, as_json: bool, output: Path | None,
                client_id: str | None, client_secret: str | None) -> None:
    """Rank the operators who received the records of a leaked data set, with evidence."""
    from audit.trace import read_leak
    from audit.tracing import format_report, trace_database, trace_remote

    one_source(url, db)
    try:
        leaked = read_leak(leaked_file.read_bytes(), kind)
    except InvalidParameter as exc:
        fail(exc.description)
    if db is not None:
        report = run(trace_database(db, leaked))
    else:
        cid, secret = credentials(client_id, client_secret)
        report = run(trace_remote(url or "", cid, secret, leaked))
    if output is not None:
        output.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    click.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else format_report(report))


@audit.command("export")
@click.option("--from", "start", required=True, type=click.IntRange(0), help="First index (inclusive).")
@click.option("--to", "end", required=True, type=click.IntRange(1), help="Last index + 1 (exclusive).")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def audit_export(start: int, end: int, db: str, output: Path) -> None:
    """Write an auditor bundle: entries, checkpoints, proofs and keys, checkable offline."""
    from audit.bundle import export_bundle
    from credcore.db import make_engine

    async def export() -> dict[str, Any]:
        engine = make_engine(db)
        try:
            return await export_bundle(engine, start, end)
        finally:
            await engine.dispose()

    bundle = run(export())
    output.write_text(json.dumps(bundle, ensure_ascii=False, indent=1), encoding="utf-8")
    click.echo(f"wrote {output}: entries {start}..{end - 1}, proven against the checkpoint of size "
               f"{bundle['checkpoints'][-1]['size']}")


@audit.command("rotate-key")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
@click.option("--origin", default=DEFAULT_ORIGIN, show_default=True, help="The log's origin (audit.origin).")
@click.option("--finish", is_flag=True, help="Retire the old key (once the new one has signed a checkpoint).")
def audit_rotate_key(db: str, origin: str, finish: bool) -> None:
    """Start a key rotation (a new key signs beside the old), or finish it (retire the old)."""
    from audit.keys import finish_rotation, history_json, load_keys, start_rotation
    from credcore.db import make_engine, reading

    async def rotate() -> dict[str, Any]:
        engine = make_engine(db)
        try:
            if finish:
                await finish_rotation(engine, origin)
            else:
                await start_rotation(engine, origin)
            async with reading(engine) as conn:
                return history_json(await load_keys(conn), origin)
        finally:
            await engine.dispose()

    history = run(rotate())
    step = "retired the old key" if finish else "added a new key; both sign from the next checkpoint"
    click.echo(f"{step}. key history:", err=True)
    click.echo(json.dumps(history, indent=1))


@audit.command("prune")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
@click.option("--before", required=True, help="Prune the payload of entries before this time (RFC 3339 or date).")
@click.option("--retention-days", default=1096, show_default=True, type=int,
              help="The retention period (at least 184 days: six months).")
def audit_prune(db: str, before: str, retention_days: int) -> None:
    """Remove the payload of entries older than the retention period (audited; hashes kept)."""
    from audit.retention import check_retention_days, prune
    from credcore.db import make_engine

    when = parse_time(before, "--before")
    try:
        check_retention_days(retention_days, "--retention-days")
    except CredgateError as exc:
        fail(exc.description)

    async def go() -> Any:
        engine = make_engine(db)
        try:
            return await prune(engine, when or dt.datetime.now(dt.UTC), retention_days=retention_days, actor="cli")
        finally:
            await engine.dispose()

    result = run(go())
    click.echo(f"pruned the payload of {result.pruned} entries below index {result.up_to}; "
               f"recorded as audit entry {result.event_index}")


@audit.command("key")
@click.option("--db", required=True, help="SQLAlchemy URL of the gateway database.")
@click.option("--origin", default=DEFAULT_ORIGIN, show_default=True)
@click.option("--witness-name", help="Print this gateway's witness key of that name instead (made on first use).")
def audit_key(db: str, origin: str, witness_name: str | None) -> None:
    """Print the log's note verifier key (or the witness key), making it on first use."""
    from audit.checkpointer import load_or_create_signer
    from audit.witnessing import load_or_create_cosigner
    from credcore.db import make_engine

    async def key() -> str:
        engine = make_engine(db)
        try:
            if witness_name:
                return (await load_or_create_cosigner(engine, witness_name)).verifier_key
            return (await load_or_create_signer(engine, origin)).verifier_key
        finally:
            await engine.dispose()

    click.echo(run(key()))
