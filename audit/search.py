"""Search parameters (/audit/search and `credgate audit search`): parsed once, each bad one named.

`parse_search` turns the query string into a SearchQuery or raises InvalidParameter naming the
first malformed parameter (the gateway answers 400 with it); nothing is read before that."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from audit.auditor import auditor_headers
from audit.reader import MAX_SEARCH_PAGE, SEARCH_PAGE, AuditReader, SearchQuery
from credcore.codes import is_valid_uscc
from credcore.db import make_engine
from credcore.errors import ConfigError, InvalidParameter

DECISIONS = ("allow", "deny", "error")
PARAMETERS = ("operator", "uscc", "decision", "since", "until", "cursor", "limit", "record_sha256", "record_id")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CURSOR = re.compile(r"(-?[1-9][0-9]{0,17}|0)\.(0|[1-9][0-9]{0,17})")


def _time(params: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = params.get(name) or ""
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(name, f"The '{name}' parameter must be an RFC 3339 time.") from None
    if value.tzinfo is None:
        raise InvalidParameter(name, f"The '{name}' parameter must carry a timezone offset.")
    return value


def _text(params: Mapping[str, str], name: str, limit: int = 200) -> str | None:
    raw = params.get(name) or None
    if raw is not None and (len(raw) > limit or any(c < " " for c in raw)):
        raise InvalidParameter(name, f"The '{name}' parameter is longer than {limit} characters or has a control "
                                     "character.")
    return raw


def parse_search(params: Mapping[str, str]) -> SearchQuery:
    """A SearchQuery from query parameters; InvalidParameter naming the first bad one."""
    uscc = params.get("uscc") or None
    if uscc is not None and not is_valid_uscc(uscc):
        raise InvalidParameter("uscc", "The 'uscc' parameter is not a valid credit code.")
    decision = params.get("decision") or None
    if decision is not None and decision not in DECISIONS:
        raise InvalidParameter("decision", "The 'decision' parameter must be allow, deny or error.")
    since, until = _time(params, "since"), _time(params, "until")
    if since is not None and until is not None and until <= since:
        raise InvalidParameter("until", "The 'until' parameter must be later than 'since'.")
    cursor = params.get("cursor") or ""
    match = _CURSOR.fullmatch(cursor) if cursor else None
    if cursor and match is None:
        raise InvalidParameter("cursor", "The 'cursor' parameter is malformed (use the 'next' of a previous page).")
    raw_limit = params.get("limit") or ""
    if raw_limit and (not raw_limit.isdigit() or not 1 <= int(raw_limit[:5]) <= MAX_SEARCH_PAGE or len(raw_limit) > 5):
        raise InvalidParameter("limit", f"The 'limit' parameter must be an integer from 1 to {MAX_SEARCH_PAGE}.")
    digest = params.get("record_sha256") or None
    if digest is not None and not _HEX64.fullmatch(digest):
        raise InvalidParameter("record_sha256", "The 'record_sha256' parameter must be 64 lowercase hex digits.")
    return SearchQuery(
        operator=_text(params, "operator"), uscc=uscc, decision=decision, since=since, until=until,
        record_sha256=digest, record_id=_text(params, "record_id"),
        after=(int(match.group(1)), int(match.group(2))) if match else None,
        limit=int(raw_limit) if raw_limit else SEARCH_PAGE,
    )


Hits = list[tuple[int, dict[str, Any]]]


async def search_database(url: str, filters: Mapping[str, str], cursor: str, limit: int) -> tuple[Hits, str | None]:
    query = parse_search({**filters, "cursor": cursor, "limit": str(limit)})
    engine = make_engine(url)
    try:
        hits, following = await AuditReader(engine).search(query)
    finally:
        await engine.dispose()
    return hits, following


async def search_remote(url: str, client_id: str, client_secret: str, filters: Mapping[str, str], cursor: str,
                        limit: int) -> tuple[Hits, str | None]:
    base = url.rstrip("/")
    parse_search({**filters, "cursor": cursor, "limit": str(limit)})  # refuse bad input before any request
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            auth = await auditor_headers(session, base, client_id, client_secret)
            params = {**filters, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{base}/audit/search", params=params,
                                   headers=auth) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise ConfigError(f"the gateway refused the search ({resp.status}): "
                                      f"{body.get('error_description', '')}")
    except aiohttp.ClientError as exc:
        raise ConfigError(f"cannot reach the gateway at {base}: {exc}") from exc
    return [(int(h["index"]), h["entry"]) for h in body["entries"]], body.get("next")
