"""A partner gateway over HTTP, for `credgate crosstab sync`: token, outbox pages, inbox batches.

One aiohttp session per sync run, with connect, read and total timeouts: a partner that answers
slowly fails the attempt instead of holding the sync forever. Answers are read up to a size
bound (a page of at most `limit` records of at most MAX_RECORD_BYTES each), parsed as JSON and
handed back as values; whether they have the contract's shape is `crosstab.exchange`'s to
judge, so garbage never moves a cursor. Every failure here raises (aiohttp.ClientError,
TimeoutError, PartnerGarbage or PartnerHTTPError) and the caller's RetryPolicy decides what next.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

import aiohttp

from credcore.clock import Clock
from crosstab.errors import PartnerGarbage, PartnerHTTPError
from crosstab.records import MAX_RECORD_BYTES

__all__ = ["Link", "PartnerClient", "PartnerGarbage", "PartnerHTTPError", "Timeouts", "check_base_url", "session"]

SYNC_SCOPE = "crosstab:pull crosstab:push"
MAX_URL = 500  # crosstab_partner_links.base_url
MAX_CLIENT_ID = 128  # crosstab_partner_links.client_id
_SLACK = 64 * 1024  # envelope and JSON escaping around the records


@dataclass(frozen=True)
class Link:
    """Where a partner gateway is, and our OAuth client there."""

    region: str
    base_url: str
    client_id: str
    client_secret: str

    @property
    def token_url(self) -> str:
        return self.base_url.rstrip("/") + "/oauth/token"

    @property
    def outbox_url(self) -> str:
        return self.base_url.rstrip("/") + "/crosstab/v1/outbox"

    @property
    def inbox_url(self) -> str:
        return self.base_url.rstrip("/") + "/crosstab/v1/inbox"


def check_base_url(url: str) -> str:
    """A partner gateway's base URL: http(s), a host, no query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("a partner URL is http(s)://host[:port][/path] with no query or fragment")
    if len(url.rstrip("/")) > MAX_URL:  # the column's length: PostgreSQL refuses longer, SQLite would not
        raise ValueError(f"a partner URL has at most {MAX_URL} characters")
    return url.rstrip("/")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    read: float = 15.0
    total: float = 30.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.total, sock_connect=self.connect, sock_read=self.read)


async def _read_json(resp: aiohttp.ClientResponse, limit: int) -> Any:
    if resp.content_length is not None and resp.content_length > limit:
        raise PartnerGarbage(f"the answer is over {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            raise PartnerGarbage(f"the answer is over {limit} bytes")
    if resp.status >= 400:
        raise PartnerHTTPError(str(resp.url), resp.status, bytes(body[:200]).decode("utf-8", "replace"))
    try:
        return json.loads(bytes(body))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PartnerGarbage(f"the answer of {resp.url} is not JSON") from exc


class PartnerClient:
    """Talks to one partner gateway as our OAuth client there."""

    def __init__(self, session: aiohttp.ClientSession, link: Link, clock: Clock) -> None:
        self.session = session
        self.link = link
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        """A cached access token, renewed 30 s before it expires."""
        if self._token is not None and self.clock.time() < self._expires - 30:
            return self._token
        # RFC 6749 section 2.3.1: id and secret are form-urlencoded before the Basic encoding.
        pair = f"{quote_plus(self.link.client_id)}:{quote_plus(self.link.client_secret)}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        data = {"grant_type": "client_credentials", "scope": SYNC_SCOPE}
        async with self.session.post(self.link.token_url, data=data, headers={"Authorization": basic}) as resp:
            body = await _read_json(resp, _SLACK)
        token, lifetime = body.get("access_token") if isinstance(body, dict) else None, None
        if isinstance(body, dict):
            lifetime = body.get("expires_in")
        if not isinstance(token, str) or not token:
            raise PartnerGarbage(f"{self.link.token_url} did not answer with an access token")
        self._token = token
        self._expires = self.clock.time() + (lifetime if isinstance(lifetime, int) and lifetime > 0 else 60)
        return token

    async def _call(self, method: str, url: str, limit: int, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {await self.token()}", "Accept": "application/json"}
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            if resp.status == 401:
                self._token = None  # revoked or expired early: the retry asks for a new one
            return await _read_json(resp, limit)

    async def fetch_page(self, after: int, limit: int) -> Any:
        """GET the partner's outbox after `after` (the caller checks the shape)."""
        params = {"after": str(after), "limit": str(limit)}
        return await self._call("GET", self.link.outbox_url, limit * MAX_RECORD_BYTES + _SLACK, params=params)

    async def send_batch(self, records: list[str]) -> Any:
        """POST our records to the partner's inbox (the caller checks the answer)."""
        return await self._call("POST", self.link.inbox_url, len(records) * 400 + _SLACK, json={"records": records})


def session(timeouts: Timeouts) -> aiohttp.ClientSession:
    # No cookie jar: partners are spoken to with tokens, and no state may carry between exchanges.
    return aiohttp.ClientSession(timeout=timeouts.client_timeout(), raise_for_status=False,
                                 cookie_jar=aiohttp.DummyCookieJar())
