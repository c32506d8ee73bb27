"""The one pooled client session to the public credit store, and the one place where the
client library's errors become credgate's (`raise ... from exc`).

The store's address comes from the configuration only; a request can choose the path among the
fixed routes and two paging parameters, never a host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from credcore.errors import NotFound, UpstreamError, UpstreamTimeout

MAX_UPSTREAM_BYTES = 16 * 1024 * 1024


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or UpstreamError past `limit` bytes. (`content.read(n)` returns what has
    arrived so far, not the whole body: a large answer would be cut at a chunk boundary.)"""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise UpstreamError("The public credit store's answer is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


class Upstream:
    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float, pool_size: int) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=connect_timeout + read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30)
        # No cookie jar: one pooled session serves every operator, and a cookie from one answer
        # would ride along on the next operator's request to the store.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=True, raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get_json(self, path: str, params: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, Any]:
        """GET `path` from the store: its JSON object, or NotFound / UpstreamError / UpstreamTimeout."""
        return parse_object(await self.get_bytes(path, params, headers))

    async def get_bytes(self, path: str, params: Mapping[str, str], headers: Mapping[str, str]) -> bytes:
        """GET `path` from the store: the raw body of a 200, or NotFound / UpstreamError / UpstreamTimeout."""
        if self._session is None:
            raise UpstreamError("The gateway has no connection to the public credit store.")
        try:
            request = self._session.get(self._base + path, params=params or None, headers=headers,
                                        allow_redirects=False)
            async with request as resp:
                if resp.status == 404:
                    raise NotFound("No such entity in the public credit store.")
                if resp.status != 200:
                    raise UpstreamError(f"The public credit store answered {resp.status}.")
                length = resp.content_length
                if length is not None and length > MAX_UPSTREAM_BYTES:
                    raise UpstreamError("The public credit store's answer is too large.")
                if length is not None and not resp.headers.get("Content-Encoding"):
                    raw = await resp.read()  # its length is declared and checked, and the parser enforces it
                else:  # chunked or compressed: counted as it arrives
                    raw = await _read_bounded(resp, MAX_UPSTREAM_BYTES)
        except TimeoutError as exc:  # asyncio.TimeoutError and aiohttp's timeouts are TimeoutError
            raise UpstreamTimeout("The public credit store did not answer in time.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The public credit store cannot be reached ({type(exc).__name__}).") from exc
        return raw


def parse_object(raw: bytes) -> dict[str, Any]:
    """The store's answer as a JSON object, or UpstreamError."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UpstreamError("The public credit store answered with something that is not JSON.") from exc
    if not isinstance(body, dict):
        raise UpstreamError("The public credit store answered with JSON that is not an object.")
    return body
