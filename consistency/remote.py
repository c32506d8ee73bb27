"""Sources at http(s) URLs: a paged JSON feed, a plain JSON Lines body, or a CSV file.

A paged feed answers `{"records": [...], "next": cursor | null}` and the next page is the same
URL with `?cursor=<next>` (the store's `/v1/disclosures` does this). Anything else whose first
line is a JSON object is read as JSON Lines, streamed; a `text/csv` answer (or a `.csv` path) is
saved to a temporary file and read as CSV.

Each request is retried on a connection error, a timeout, a 5xx or a 429, with exponential
backoff; other 4xx are final. A JSON Lines body that breaks off mid-stream is not retried (its
first records have been used already); the source is then unavailable, as after the last retry.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from consistency.errors import SourceError, SourceUnavailable
from consistency.rules import BadLine
from consistency.sources import BATCH, FileSource, Item, canonical_encoding

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class HttpSource:
    """A URL source with retries, backoff and timeouts."""

    path: str | None = None

    def __init__(self, url: str, *, encoding: str | None = None, attempts: int = 4,
                 backoff: float = 0.5, timeout: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if attempts < 1:
            raise SourceError("a source needs at least one attempt")
        self.url = url
        self.label = url
        self.encoding = canonical_encoding(encoding) if encoding else None
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout,
                                             sock_read=timeout)
        self._sleep = sleep

    async def batches(self) -> AsyncIterator[list[Item]]:
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            response = await self._get(session, URL(self.url, encoded=True))
            content_type = response.headers.get("Content-Type", "").lower()
            if "csv" in content_type or URL(self.url).path.lower().endswith(".csv"):
                async for batch in self._csv(response):
                    yield batch
                return
            async for batch in self._json(session, response):
                yield batch

    async def _get(self, session: aiohttp.ClientSession, url: URL) -> aiohttp.ClientResponse:
        """A 200 response to GET `url`, after retries; SourceUnavailable when none comes."""
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                await self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await session.get(url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
                continue
            if response.status == 200:
                return response
            last = f"HTTP {response.status} {response.reason or ''}".strip()
            response.release()
            if response.status not in _RETRY_STATUS:
                break
        raise SourceUnavailable(f"{url}: {last} (after {attempt + 1} attempt"
                                f"{'s' if attempt else ''})")

    def _charset(self, response: aiohttp.ClientResponse) -> str:
        return self.encoding or canonical_encoding(response.charset or "utf-8")

    async def _json(self, session: aiohttp.ClientSession,
                    response: aiohttp.ClientResponse) -> AsyncIterator[list[Item]]:
        encoding = self._charset(response)
        chunks = _chunks(response, self.url)
        buffer = b""
        async for chunk in chunks:  # read as far as the first line
            buffer += chunk
            if b"\n" in buffer.lstrip():
                break
        head = buffer.removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0].strip()
        page: Any = None
        if _is_json_object(head):
            page = _page(head)
            if page is not None:  # a page on one line: the body is that page
                async for chunk in chunks:
                    buffer += chunk
                page = _page(buffer)
        else:  # perhaps a page written over several lines; pages are small, read it all
            async for chunk in chunks:
                buffer += chunk
            page = _page(buffer)
        if page is None:
            async for batch in _jsonl(buffer, chunks, encoding):
                yield batch
            return
        async for batch in self._pages(session, page):
            yield batch

    async def _pages(self, session: aiohttp.ClientSession,
                     page: Any) -> AsyncIterator[list[Item]]:
        number = 0
        seen: set[str] = set()
        while True:
            if not isinstance(page, dict) or not isinstance(page.get("records"), list):
                raise SourceError(f"{self.url}: a page is not {{\"records\": [...], \"next\"}}")
            batch: list[Item] = []
            for record in page["records"]:
                number += 1
                batch.append((number, record, -1))
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch
            cursor = page.get("next")
            if cursor is None or cursor == "":
                return
            cursor = str(cursor)
            if cursor in seen:
                raise SourceError(f"{self.url}: the feed's cursor {cursor!r} repeats")
            seen.add(cursor)
            url = URL(self.url, encoded=True).update_query(cursor=cursor)
            response = await self._get(session, url)
            body = b"".join([chunk async for chunk in _chunks(response, str(url))])
            page = _page(body)

    async def _csv(self, response: aiohttp.ClientResponse) -> AsyncIterator[list[Item]]:
        handle, path = tempfile.mkstemp(prefix="credgate-agency-", suffix=".csv")
        try:
            with os.fdopen(handle, "wb") as out:
                async for chunk in _chunks(response, self.url):
                    out.write(chunk)
            source = FileSource(path, encoding=self.encoding, fmt="csv")
            source.label = self.label
            async for batch in source.batches():
                yield batch
        finally:
            os.unlink(path)


def _page(body: bytes) -> Any:
    """The body as a page object when it is one, else None."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(value, dict) and isinstance(value.get("records"), list):
        return value
    return None


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


async def _chunks(response: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(1 << 16):
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SourceUnavailable(f"{url}: the body broke off: {exc or type(exc).__name__}") from None
    finally:
        response.release()


async def _jsonl(buffer: bytes, chunks: AsyncIterator[bytes],
                 encoding: str) -> AsyncIterator[list[Item]]:
    """JSON Lines from what was read so far plus the rest of the stream."""
    number = 0
    batch: list[Item] = []
    pending = buffer

    def take(lines: list[bytes]) -> None:
        nonlocal number
        for raw in lines:
            number += 1
            body = raw.rstrip(b"\r").removeprefix(b"\xef\xbb\xbf")
            if not body.strip():
                continue
            if encoding == "utf-8":
                batch.append((number, body, -1))
            else:
                try:
                    batch.append((number, body.decode(encoding).encode("utf-8"), -1))
                except UnicodeDecodeError:
                    batch.append((number, BadLine(f"the line is not valid {encoding}"), -1))

    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        take(lines)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    *lines, pending = pending.split(b"\n")
    take([*lines, pending])
    if batch:
        yield batch
