"""Filling our outbox: list entries drawn from the public credit store, and drafts from a file.

From the store. Each entry of the seriously-untrustworthy list about a company of our region
(its code's division code falls under ours) becomes a `joint_punishment` record, valid from
the start of its disclosure to its end. Its jti is derived from the store's record id, so
publishing again issues nothing twice (the jti is unique). An entry we published that is no
longer on the list (repaired, withdrawn, expired) gets a revocation, once.

From a file. JSON Lines of drafts (`{"type", "sub", "scheme", "grade", "valid_from", ...,
"domestic_only", "jti"}`); every line is validated before the first is issued, so a bad file
changes nothing and the error names the line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from sqlalchemy import select

from credcore.db import reading
from credcore.errors import InvalidParameter
from crosstab import tables as t
from crosstab.errors import InvalidRecord
from crosstab.exchange import Region
from crosstab.outbox import Draft
from crosstab.records import LIST_TYPES, parse_payload

_DRAFT_MEMBERS = frozenset(Draft.__dataclass_fields__) | {"jti"}
_JTI = re.compile(r"^[\x21-\x7e]{1,128}$")
STORE_PREFIX = "store-"
_CURSOR = re.compile(r"^[A-Za-z0-9_=-]{1,200}$")


def region_prefix(region: str) -> str:
    """The leading digits that codes of a division share: 310000 -> 31, 320500 -> 3205."""
    prefix = region
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def store_jti(record_id: str) -> str:
    candidate = STORE_PREFIX + record_id
    if _JTI.match(candidate) and len(candidate) <= 100:
        return candidate
    return STORE_PREFIX + hashlib.sha256(record_id.encode()).hexdigest()[:32]


def _day(value: object) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def list_entry_draft(entry: Mapping[str, Any], region: str, today: dt.date) -> tuple[str, Draft] | None:
    """The record to publish for a store list entry, or None when it is not ours to publish now."""
    sub, record_id = entry.get("uscc"), entry.get("record_id")
    if not isinstance(sub, str) or not isinstance(record_id, str) or not record_id:
        return None
    if not sub[2:8].startswith(region_prefix(region)) or entry.get("status", "disclosed") != "disclosed":
        return None
    start = _day(entry.get("disclosure_start")) or _day(entry.get("decision_date"))
    end = _day(entry.get("disclosure_end"))
    if start is None or (end is not None and end < today) or entry.get("removed_at"):
        return None
    draft = Draft(
        "joint_punishment", sub, subject_name=entry.get("subject_name"), list_name=entry.get("list_name"),
        decision_number=entry.get("decision_number"), authority=entry.get("authority"),
        authority_uscc=entry.get("authority_uscc"), valid_from=start, valid_until=end,
    )
    return store_jti(record_id), draft


async def read_store_list(http: aiohttp.ClientSession, store_url: str, max_pages: int = 1000) -> list[dict[str, Any]]:
    """Every entry of the store's seriously-untrustworthy list (all pages)."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        async with http.get(f"{store_url.rstrip('/')}/v1/lists/serious-untrustworthy", params=params) as resp:
            if resp.status != 200:
                raise ValueError(f"the store answered {resp.status} for its list")
            body = await resp.json(content_type=None)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ValueError("the store's list page is not {\"records\": [...], \"next\"}")
        out.extend(r for r in body["records"] if isinstance(r, dict))
        nxt = body.get("next")
        if not nxt:
            return out
        if not isinstance(nxt, str) or not _CURSOR.match(nxt):
            raise ValueError("the store's list cursor is malformed")
        cursor = nxt
    raise ValueError(f"the store's list has more than {max_pages} pages")


@dataclass
class PublishReport:
    issued: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    unchanged: int = 0
    invalid: list[str] = field(default_factory=list)  # store records we could not publish, and why


async def _store_jtis(region: Region) -> dict[str, str]:
    """Our issued jtis from the store, with their type."""
    query = select(t.issued.c.jti, t.issued.c.type).where(t.issued.c.jti.like(f"{STORE_PREFIX}%"))
    async with reading(region.store.engine) as conn:
        return {row.jti: row.type for row in await conn.execute(query)}


async def publish_from_store(region: Region, entries: Iterable[Mapping[str, Any]], *,
                             domestic_only: bool = False) -> PublishReport:
    """Publish our region's list entries; revoke those we published that are gone."""
    report = PublishReport()
    known = await _store_jtis(region)
    current: set[str] = set()
    for entry in entries:
        made = list_entry_draft(entry, region.code, region.today())
        if made is None:
            continue
        jti, draft = made
        current.add(jti)
        if jti in known:
            report.unchanged += 1
            continue
        try:
            await region.issue(Draft(**{**vars(draft), "domestic_only": domestic_only}), jti)
        except InvalidRecord as exc:
            report.invalid.append(f"{entry.get('record_id')}: {exc.description}")
            continue
        report.issued.append(jti)
    for jti, kind in sorted(known.items()):
        revocation = f"{jti}.revoked"
        if kind in LIST_TYPES and jti not in current and revocation not in known:
            async with reading(region.store.engine) as conn:
                sub = await conn.scalar(select(t.issued.c.sub).where(t.issued.c.jti == jti))
            await region.issue(Draft("revocation", str(sub), revokes=jti), revocation)
            report.revoked.append(jti)
    return report


def parse_draft_lines(lines: Iterable[str], region: str) -> list[tuple[str | None, Draft]]:
    """Drafts from JSON Lines, all validated first; InvalidParameter names the bad line."""
    out: list[tuple[str | None, Draft]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
            unknown = sorted(set(item) - _DRAFT_MEMBERS)
            if unknown:
                raise ValueError(f"unknown member {unknown[0]!r}")
            jti = item.pop("jti", None)
            if jti is not None and (not isinstance(jti, str) or not _JTI.match(jti)):
                raise ValueError("jti must be 1 to 128 printable ASCII characters")
            domestic = item.pop("domestic_only", False)
            if not isinstance(domestic, bool):
                raise ValueError("domestic_only must be true or false")
            record = parse_payload({"iss": region, "jti": jti or "check", "iat": 0, "seq": 1, **item})
        except (ValueError, InvalidRecord) as exc:
            why = exc.description if isinstance(exc, InvalidRecord) else str(exc)
            raise InvalidParameter("file", f"line {number}: {why}") from exc
        fields = {k: v for k, v in vars(record).items() if k not in ("iss", "jti", "iat", "seq")}
        out.append((jti, Draft(**fields, domestic_only=domestic)))
    return out
