"""`credgate crosstab ...`: partners, sync and publishing, on the gateway's database.

Thin: each command parses its arguments and calls `CrosstabRuntime` (built on the database by
`gateway.crosstab_api.offline_runtime`, the CLI's one import of the gateway, made inside the
command because the runtime needs the gateway's OAuth clients and audit log). Every change is
audited like its API twin. Failures are one line on stderr: exit 2 for bad usage or input, 1
when a sync or publish did not complete.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from credcore.errors import CredgateError, UpstreamError

if TYPE_CHECKING:
    from crosstab.runtime import CrosstabRuntime

T = TypeVar("T")
ACTOR = "credgate-cli"


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"credgate: {message}", err=True)
    sys.exit(code)


@asynccontextmanager
async def _runtime(config: Path | None, db: str | None) -> AsyncIterator[CrosstabRuntime]:
    from gateway.crosstab_api import offline_runtime

    async with offline_runtime(config=config, db=db) as runtime:
        yield runtime


def _run(ctx: click.Context, action: Callable[[CrosstabRuntime], Awaitable[T]]) -> T:
    config, db = ctx.obj["config"], ctx.obj["db"]

    async def main() -> T:
        async with _runtime(config, db) as runtime:
            return await action(runtime)

    try:
        return asyncio.run(main())
    except CredgateError as exc:
        fail(exc.description, 1 if exc.status in (502, 503, 504) else 2)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@click.group()
@click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The gateway's TOML config (its database, region and domestic set).")
@click.option("--db", help="SQLAlchemy URL of the gateway database, e.g. sqlite:///credgate.db (no domestic set).")
@click.pass_context
def crosstab(ctx: click.Context, config: Path | None, db: str | None) -> None:
    """Cross-region mutual recognition: partners, sync, publishing."""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, db=db)


@crosstab.group()
def partner() -> None:
    """Register, list, link and remove partner regions."""


def _read_jwks(source: str) -> Any:
    if source.startswith(("http://", "https://")):
        import aiohttp

        async def fetch() -> Any:
            timeout = aiohttp.ClientTimeout(total=15)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(source) as resp:
                if resp.status != 200:
                    raise click.ClickException(f"{source} answered {resp.status}")
                return await resp.json(content_type=None)

        try:
            return asyncio.run(fetch())
        except (OSError, TimeoutError, ValueError) as exc:
            fail(f"cannot read the JWKS at {source}: {exc}")
    try:
        return json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read the JWKS file {source}: {exc}")


@partner.command("add")
@click.argument("region")
@click.option("--name", required=True, help="The partner's name, e.g. 'Jiangsu Public Credit Platform'.")
@click.option("--jwks", "jwks_source", required=True,
              help="The partner's JWK Set: a file, or its URL (…/crosstab/v1/jwks.json).")
@click.option("--types", default="evaluation,joint_reward,joint_punishment,revocation", show_default=True,
              help="Comma-separated record types the partner may send.")
@click.option("--domestic/--not-domestic", default=False, show_default=True,
              help="Registered as domestic (it must also be in crosstab.domestic_regions).")
@click.pass_context
def partner_add(ctx: click.Context, region: str, name: str, jwks_source: str, types: str, domestic: bool) -> None:
    """Register (or re-register, rotating keys) a partner; print its new OAuth client."""
    body = {"region": region, "name": name, "jwks": _read_jwks(jwks_source),
            "record_types": [x.strip() for x in types.split(",") if x.strip()], "domestic": domestic}
    _echo_json(_run(ctx, lambda rt: rt.register_partner(body, actor=ACTOR)))


@partner.command("link")
@click.argument("region")
@click.option("--url", required=True, help="The partner gateway's base URL.")
@click.option("--client-id", required=True, help="Our client id at the partner (from its POST /admin/partners).")
@click.option("--client-secret", envvar="CREDGATE_PARTNER_SECRET", prompt=True, hide_input=True,
              help="Our client secret there (or CREDGATE_PARTNER_SECRET; prompted if absent).")
@click.pass_context
def partner_link(ctx: click.Context, region: str, url: str, client_id: str, client_secret: str) -> None:
    """Record where a partner's gateway is and our client there, for sync."""
    _run(ctx, lambda rt: rt.link_partner(region, url, client_id, client_secret, actor=ACTOR))
    click.echo(f"linked {region}: {url}")


@partner.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def partner_list(ctx: click.Context, as_json: bool) -> None:
    """List partners: types, keys, clients, links and sync cursors."""
    rows = _run(ctx, lambda rt: rt.partners())
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no partners")
    for p in rows:
        kids = ", ".join(k["kid"] + (f" (until {k['valid_until']})" if k["valid_until"] else "") for k in p["keys"])
        click.echo(f"{p['region']}  {p['name']}  domestic={'yes' if p['domestic'] else 'no'}  "
                   f"types={','.join(p['record_types'])}")
        click.echo(f"    keys: {kids}")
        click.echo(f"    client: {p['client_id'] or '-'}  url: {p['url'] or '-'}  "
                   f"pulled after seq {p['pull_after']}, pushed after seq {p['push_after']}")


@partner.command("remove")
@click.argument("region")
@click.pass_context
def partner_remove(ctx: click.Context, region: str) -> None:
    """Remove a partner: its keys, link and OAuth client go; records received stay."""
    _run(ctx, lambda rt: rt.remove_partner(region, actor=ACTOR))
    click.echo(f"removed {region}")


@crosstab.command("sync")
@click.option("--partner", "only", multiple=True, help="Only this region (repeatable); default every link.")
@click.option("--push/--no-push", default=False, show_default=True, help="Also push our outbox to their inbox.")
@click.option("--pull/--no-pull", default=True, show_default=True, help="Pull their outbox.")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0.1, 600),
              help="Seconds per request.")
@click.option("--attempts", default=5, show_default=True, type=click.IntRange(1, 20), help="Tries per request.")
@click.option("--backoff", default=0.5, show_default=True, type=click.FloatRange(0, 60),
              help="First pause between tries, doubled each time (at most 30 s).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 500), help="Records per page.")
@click.pass_context
def sync(ctx: click.Context, only: tuple[str, ...], push: bool, pull: bool, timeout: float, attempts: int,
         backoff: float, limit: int) -> None:
    """Pull each partner's outbox from our cursor (and push ours); resumable, never duplicating."""
    from crosstab.exchange import RetryPolicy
    from crosstab.partner_http import Timeouts

    timeouts = Timeouts(connect=min(timeout, 10.0), read=timeout, total=timeout)
    retry = RetryPolicy(attempts=attempts, base_delay=backoff)
    outcomes = _run(ctx, lambda rt: rt.sync(only=only, pull=pull, push=push, timeouts=timeouts, retry=retry,
                                            limit=limit))
    failed = False
    for o in outcomes:
        r = o.report
        moved = f"seq {r.cursor_before} -> {r.cursor_after}" if r else "no progress"
        counts = f"{len(r.accepted)} accepted, {len(r.rejected)} rejected" if r else ""
        if o.error:
            failed = True
            click.echo(f"{o.direction} {o.partner}: FAILED ({counts}, {moved}): {o.error}", err=True)
        else:
            click.echo(f"{o.direction} {o.partner}: {counts}, {moved}")
        for rej in (r.rejected if r else []):
            click.echo(f"    rejected #{rej.index} {rej.jti or '-'}: {rej.error} {rej.error_description}")
    if not outcomes:
        click.echo("no linked partners to sync")
    if failed:
        sys.exit(1)


@crosstab.command("publish")
@click.option("--from-store", "store_url", help="The public credit store (default with --config: its upstream).")
@click.option("--file", "draft_file", type=click.File("r", encoding="utf-8"), help="JSON Lines of record drafts.")
@click.option("--domestic-only", is_flag=True, help="Mark the store's entries published now as domestic-only.")
@click.pass_context
def publish(ctx: click.Context, store_url: str | None, draft_file: Any, domestic_only: bool) -> None:
    """Publish our region's records to the outbox: the store's list entries, or drafts from a file."""
    from crosstab.publish import parse_draft_lines, publish_from_store, read_store_list

    if store_url is None and draft_file is None and ctx.obj["config"] is not None:
        from gateway.config import load_settings

        store_url = load_settings(ctx.obj["config"], environ=os.environ).upstream.url
    if (store_url is None) == (draft_file is None):
        fail("give exactly one of --from-store or --file.")
    lines = draft_file.read().splitlines() if draft_file is not None else []

    async def action(rt: CrosstabRuntime) -> list[str]:
        if draft_file is not None:
            drafts = parse_draft_lines(lines, rt.code)
            return [f"issued {(await rt.region.issue(d, jti)).jti}" for jti, d in drafts]
        import aiohttp

        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                entries = await read_store_list(http, str(store_url))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"cannot read the store's list at {store_url}: {exc}") from exc
        report = await publish_from_store(rt.region, entries, domestic_only=domestic_only)
        return ([f"issued {j}" for j in report.issued] + [f"revoked {j}" for j in report.revoked]
                + [f"invalid {why}" for why in report.invalid] + [f"{report.unchanged} already published"])

    for line in _run(ctx, action):
        click.echo(line)


@crosstab.command("rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Retire our signing key and make a new one (gateways sign with it after a restart)."""
    from crosstab.keys import rotate_key as rotate

    async def action(rt: CrosstabRuntime) -> str:
        ring = await rotate(rt.region.store.engine, rt.code, rt.clock)
        return ring.signer.kid

    click.echo(f"new signing key {_run(ctx, action)}; the old one stays published in jwks.json")
