"""One region's exchange at run time: the objects the HTTP layer and the CLI both call.

`CrosstabRuntime` joins the sans-I/O `Region` to what it needs from outside crosstab, passed in
as protocols so that this package imports nothing of the gateway: an audit sink (`append`), an
OAuth client registry (partner clients) and the admin audit function. The gateway builds one
per process (`gateway.crosstab_api.setup_crosstab`); the CLI builds one on the same database.

Rules kept here:
- A request's partner region comes only from its OAuth client (`PartnerAccess`), never from
  the request; a client that maps to no registered partner is refused (403).
- Admin changes are audited before they are applied, as every admin action (gateway/admin.py).
- Each page of a sync is audited before its cursor moves (`Region.sync_from(on_page=...)`),
  and a failed sync is audited too: every exchange, in or out, is an entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.canonical import canonical_json
from credcore.clock import Clock, rfc3339
from credcore.errors import ConfigError, CredgateError, InvalidParameter, NotFound
from crosstab import _jose
from crosstab.access import PartnerAccess
from crosstab.audit_entries import ExchangeRecord
from crosstab.errors import MalformedBatch, UnknownPartner
from crosstab.exchange import PageOutcome, Region, RetryPolicy, SyncReport
from crosstab.inbox import check_batch
from crosstab.keys import load_or_create_keys
from crosstab.outbox import DEFAULT_PAGE
from crosstab.partner_http import MAX_CLIENT_ID, Link, PartnerClient, Timeouts, check_base_url, session
from crosstab.partners import build_partner, check_region, parse_registration
from crosstab.records import MAX_BATCH
from crosstab.store import CrosstabStore
from crosstab.trust import DomesticPolicy

log = logging.getLogger(__name__)
PARTNER_SCOPE = "crosstab:push crosstab:pull"
_MAX_SEQ = 2**53 - 1


class AuditSink(Protocol):
    async def append(self, entry: dict[str, Any]) -> int: ...


class ClientRegistry(Protocol):
    async def create_client(self, *, name: str, scope: str, client_id: str | None = None) -> tuple[str, str | None]: ...

    async def set_client_status(self, client_id: str, status: str) -> None: ...

    async def revoke_all_tokens(self, client_id: str) -> None: ...


AdminAudit = Callable[[str | None, str, str, dict[str, Any]], Awaitable[int]]  # actor, action, target, details


def _new_client_id(region: str) -> str:
    return f"crosstab-{region}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class RuntimeOptions:
    region: str
    domestic_regions: frozenset[str]
    max_batch: int = MAX_BATCH

    @classmethod
    def from_settings(cls, *, region: str, domestic_regions: str, max_batch: int) -> RuntimeOptions:
        """Validate the [crosstab] settings; a ConfigError names the setting."""
        try:
            check_region(region)
        except InvalidParameter as exc:
            raise ConfigError("setting 'crosstab.region' must be a six-digit GB/T 2260 division code.") from exc
        codes = [code.strip() for code in domestic_regions.split(",") if code.strip()]
        for code in codes:
            try:
                check_region(code)
            except InvalidParameter as exc:
                raise ConfigError(f"setting 'crosstab.domestic_regions': {code!r} is not a division code.") from exc
        if not 1 <= max_batch <= MAX_BATCH:
            raise ConfigError(f"setting 'crosstab.max_batch' must be from 1 to {MAX_BATCH}.")
        return cls(region, frozenset(codes), max_batch)


@dataclass
class SyncOutcome:
    partner: str
    direction: str
    report: SyncReport | None
    error: str | None = None


def _integer(raw: str | None, name: str, default: int, low: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or not low <= int(raw) <= _MAX_SEQ:
        raise InvalidParameter(name, f"'{name}' must be an integer of at least {low}.")
    return int(raw)


def parse_inbox_body(body: bytes) -> list[object]:
    """`{"records": [...]}` read strictly (no duplicate members, nothing else in it)."""
    try:
        value = _jose.json_object(body)
    except ValueError as exc:
        raise MalformedBatch(f'The body is not a JSON object ({exc}); send {{"records": [<jws>, ...]}}.') from exc
    if set(value) != {"records"} or not isinstance(value["records"], list):
        raise MalformedBatch('The body must be exactly {"records": [<jws>, ...]}.')
    return list(value["records"])


class CrosstabRuntime:
    def __init__(
        self, *, region: Region, access: PartnerAccess, audit: AuditSink, clients: ClientRegistry,
        audit_admin: AdminAudit, clock: Clock, new_client_id: Callable[[str], str] = _new_client_id,
    ) -> None:
        self.region = region
        self.access = access
        self.audit = audit
        self.clients = clients
        self.audit_admin = audit_admin
        self.clock = clock
        self.new_client_id = new_client_id

    @classmethod
    async def start(
        cls, engine: AsyncEngine, options: RuntimeOptions, *, audit: AuditSink, clients: ClientRegistry,
        audit_admin: AdminAudit, clock: Clock, **kwargs: Any,
    ) -> CrosstabRuntime:
        """Create the tables if missing, load (or make) our signing key, and build the runtime."""
        store = CrosstabStore(engine)
        await store.create_tables()
        ring = await load_or_create_keys(engine, options.region, clock)
        region = Region(
            store=store, signer=ring.signer, clock=clock, domestic=DomesticPolicy(options.domestic_regions),
            published_keys=ring.retired, max_batch=options.max_batch,
        )
        return cls(region=region, access=PartnerAccess(engine), audit=audit, clients=clients,
                   audit_admin=audit_admin, clock=clock, **kwargs)

    @property
    def code(self) -> str:
        return self.region.code

    # --- partners (admin) -----------------------------------------------------------------

    async def register_partner(self, body: Any, *, actor: str | None) -> dict[str, Any]:
        """Register or re-register a partner; answer its new OAuth client (CONTRACTS section 2).

        Re-registering replaces the partner's client (the old one is suspended and its tokens
        revoked) and merges its keys (`crosstab.partners.merge_keys`)."""
        reg = parse_registration(body, self.code)
        now = self.clock.now()
        existing = None
        with contextlib.suppress(UnknownPartner):
            existing = await self.region.store.get_partner(reg.region)
        partner = build_partner(reg, existing, now)
        old_client = await self.access.client_of(reg.region)
        client_id = self.new_client_id(reg.region)
        await self.audit_admin(actor, "register_partner", reg.region, {
            "name": reg.name, "record_types": sorted(reg.record_types), "domestic": reg.domestic,
            "keys": [{"kid": k.kid, "valid_from": k.valid_from and rfc3339(k.valid_from),
                      "valid_until": k.valid_until and rfc3339(k.valid_until)} for k in partner.keys],
            "client_id": client_id, "replaces_client": old_client,
        })
        cid, secret = await self.clients.create_client(
            name=f"crosstab partner {reg.region}", scope=PARTNER_SCOPE, client_id=client_id
        )
        await self.region.add_partner(partner)
        await self.access.set_client(reg.region, cid, now)
        if old_client is not None:
            await self._retire_client(old_client)
        return {"region": reg.region, "client_id": cid, "client_secret": secret}

    async def _retire_client(self, client_id: str) -> None:
        await self.clients.set_client_status(client_id, "suspended")
        await self.clients.revoke_all_tokens(client_id)

    async def remove_partner(self, region: str, *, actor: str | None) -> None:
        """Forget a partner: its keys, its client (suspended), our link; received records stay."""
        check_region(region)
        try:
            await self.region.store.get_partner(region)
        except UnknownPartner as exc:
            raise NotFound(f"Region {region} is not a registered partner.") from exc
        client = await self.access.client_of(region)
        await self.audit_admin(actor, "remove_partner", region, {"client_id": client})
        await self.access.drop_client(region)
        await self.region.remove_partner(region)
        await self.access.drop_link(region)
        if client is not None:
            await self._retire_client(client)

    async def link_partner(self, region: str, base_url: str, client_id: str, client_secret: str, *,
                           actor: str | None) -> None:
        """Record where a partner gateway is and our client there (the secret is not audited)."""
        check_region(region)
        try:
            url = check_base_url(base_url)
        except ValueError as exc:
            raise InvalidParameter("url", f"'url' {exc}.") from exc
        if not client_id or not client_secret:
            raise InvalidParameter("client_id", "A link needs our client id and secret at the partner.")
        if len(client_id) > MAX_CLIENT_ID:
            raise InvalidParameter("client_id", f"A client id has at most {MAX_CLIENT_ID} characters.")
        await self.region.store.get_partner(region)  # 403 UnknownPartner if not registered
        await self.audit_admin(actor, "link_partner", region, {"url": url, "client_id": client_id})
        await self.access.save_link(Link(region, url, client_id, client_secret), self.clock.now())

    async def partners(self) -> list[dict[str, Any]]:
        links = {link.region: link for link in await self.access.links()}
        out = []
        for p in await self.region.store.list_partners():
            link = links.get(p.region)
            out.append({
                "region": p.region, "name": p.name, "record_types": sorted(p.record_types),
                "domestic": self.region.domestic.is_domestic(p),
                "keys": [{"kid": k.kid, "valid_from": k.valid_from and rfc3339(k.valid_from),
                          "valid_until": k.valid_until and rfc3339(k.valid_until)} for k in p.keys],
                "client_id": await self.access.client_of(p.region),
                "url": link.base_url if link else None,
                "pull_after": await self.region.store.get_cursor(p.region, "pull"),
                "push_after": await self.region.store.get_cursor(p.region, "push"),
            })
        return out

    # --- exchange (HTTP) ------------------------------------------------------------------

    async def partner_of(self, client_id: str) -> str:
        region = await self.access.client_region(client_id)
        if region is None:
            raise UnknownPartner("This client is not the client of a registered partner region.")
        return region

    async def inbox(self, client_id: str, body: bytes, rec: ExchangeRecord) -> dict[str, Any]:
        """`POST /crosstab/v1/inbox`: judge and keep a partner's batch."""
        rec.partner = await self.partner_of(client_id)
        records = check_batch(parse_inbox_body(body), self.region.max_batch)  # 400 / 413 for the batch
        rec.concern(records)
        result = await self.region.receive(rec.partner, records)
        rec.judged(result.accepted, result.rejected)
        rec.fields = ["accepted", "rejected"]
        return result.body()

    async def outbox(self, client_id: str, after: str | None, limit: str | None, rec: ExchangeRecord) -> dict[str, Any]:
        """`GET /crosstab/v1/outbox?after=&limit=`: our records for this partner, in seq order."""
        rec.partner = await self.partner_of(client_id)
        start = _integer(after, "after", 0, 0)
        size = min(_integer(limit, "limit", DEFAULT_PAGE, 1), self.region.max_batch)
        page = await self.region.outbox_page(rec.partner, start, size)
        rec.serve(page.records, start, page.next)
        rec.fields = ["records", "next"]
        return page.body()

    def jwks(self) -> dict[str, Any]:
        return self.region.jwks()

    async def recognitions(self, uscc: str) -> dict[str, Any]:
        """The `recognitions` data set for one company (the /v1 pipeline filters and audits it)."""
        today = self.region.today()
        return {"uscc": uscc, "records": [r.to_record(today) for r in await self.region.recognitions(uscc)]}

    # --- sync (CLI) -----------------------------------------------------------------------

    async def sync(
        self, *, only: Sequence[str] = (), pull: bool = True, push: bool = False,
        timeouts: Timeouts | None = None, retry: RetryPolicy | None = None, limit: int = DEFAULT_PAGE,
    ) -> list[SyncOutcome]:
        """Pull (and push) every linked partner, or those in `only`; one failure stops no other."""
        links = await self.access.links()
        missing = sorted(set(only) - {link.region for link in links})
        if missing:
            raise NotFound(f"No link for region {missing[0]}: run `credgate crosstab partner link` first.")
        outcomes: list[SyncOutcome] = []
        async with session(timeouts or Timeouts()) as http:
            for link in links:
                if only and link.region not in only:
                    continue
                client = PartnerClient(http, link, self.clock)
                for direction in [d for d, on in (("pull", pull), ("push", push)) if on]:
                    outcomes.append(await self._sync_one(link, client, direction, retry or RetryPolicy(), limit))
        return outcomes

    async def _sync_one(self, link: Link, client: PartnerClient, direction: str, retry: RetryPolicy,
                        limit: int) -> SyncOutcome:
        async def on_page(page: PageOutcome) -> None:
            await self._append(self._page_record(link, page), 200, canonical_json(page.records), None)

        try:
            if direction == "pull":
                report = await self.region.sync_from(link.region, client.fetch_page, retry=retry, limit=limit,
                                                     on_page=on_page)
            else:
                report = await self.region.push_to(link.region, client.send_batch, retry=retry, limit=limit,
                                                   on_page=on_page)
        except CredgateError as exc:
            rec = ExchangeRecord(exchange=f"sync_{direction}", direction="in" if direction == "pull" else "out",
                                 method="GET" if direction == "pull" else "POST",
                                 path=link.outbox_url if direction == "pull" else link.inbox_url,
                                 partner=link.region, reason=exc.description)
            try:
                await self._append(rec, exc.status, None, exc.code)
            except CredgateError as audit_exc:
                log.error("could not audit a failed sync with %s: %s", link.region, audit_exc.description)
            return SyncOutcome(link.region, direction, getattr(exc, "report", None), exc.description)
        return SyncOutcome(link.region, direction, report)

    def _page_record(self, link: Link, page: PageOutcome) -> ExchangeRecord:
        pulling = page.direction == "pull"
        rec = ExchangeRecord(
            exchange=f"sync_{page.direction}", direction="in" if pulling else "out",
            method="GET" if pulling else "POST", path=link.outbox_url if pulling else link.inbox_url,
            query=f"after={page.cursor_before}" if pulling else "", partner=link.region,
        )
        rec.concern(page.records)
        rec.judged(page.accepted, page.rejected)
        if not pulling:
            rec.serve(page.records, page.cursor_before, page.cursor_after)
        rec.cursor = {"after": page.cursor_before, "next": page.cursor_after}
        rec.fields = ["records"]
        return rec

    async def _append(self, rec: ExchangeRecord, status: int, body: bytes | None, error: str | None) -> int:
        entry = rec.entry(time=rfc3339(self.clock.now()), status=status, body=body, error=error)
        return await asyncio.shield(self.audit.append(entry))
