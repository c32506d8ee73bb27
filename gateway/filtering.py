"""Minimum necessary: what of the store's answer may leave, per the operator's licence.

Pure. The licence's field allow-list applies to each record (entity profiles, record lists,
paged envelopes); envelope members (`uscc`, `records`, `next`) are kept. Bulk pages drop records
of subjects outside the licensed regions. Then, as a second line of defence, any `*_id_number`
key is removed and any GB 11643 resident ID number inside any string is masked: a field that a
licence allows must still never carry a personal identity number.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from credcore.canonical import digest_json
from credcore.codes import is_valid_uscc, mask_resident_ids
from policies.licence import region_matches

ENVELOPE = frozenset({"uscc", "records", "next"})


@dataclass
class Released:
    body: Any
    fields: set[str] = field(default_factory=set)
    stripped: set[str] = field(default_factory=set)
    # One {"id", "sha256"} per released record: the digest of its canonical JSON as released,
    # so a leaked copy (re-serialised or not) can be traced to the entries that released it.
    records: list[dict[str, str]] = field(default_factory=list)


def is_code_field(key: str) -> bool:
    """`uscc`, `authority_uscc`, ...: fields that hold a credit code, never a person's number."""
    return key == "uscc" or key.endswith("_uscc")


def is_id_number_field(key: str) -> bool:
    return key == "id_number" or key.endswith("_id_number")


def _scrub(value: Any, key: str = "") -> Any:
    if isinstance(value, str):
        # An all-digit credit code can pass every check of an ID number (region, birth date,
        # check digit); in a code field, a valid credit code is what it is and stays whole.
        if is_code_field(key) and is_valid_uscc(value):
            return value
        return mask_resident_ids(value)
    if isinstance(value, dict):
        return {k: _scrub(v, k) for k, v in value.items() if not is_id_number_field(k)}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    return value


def _record(record: Any, allowed: frozenset[str], out: Released) -> dict[str, Any] | None:
    if not isinstance(record, dict):
        return None
    kept: dict[str, Any] = {}
    for key, value in record.items():
        if key in allowed and not is_id_number_field(key):
            kept[key] = _scrub(value, key)
            out.fields.add(key)
        else:
            out.stripped.add(key)
    rid = record.get("record_id") or record.get("jti")
    if isinstance(rid, str) or len(kept) > 1:
        out.records.append({"id": rid if isinstance(rid, str) else "", "sha256": digest_json(kept)})
    return kept


def _in_regions(record: Any, prefixes: Iterable[str]) -> bool:
    code = record.get("uscc") if isinstance(record, dict) else None
    if not isinstance(code, str) or len(code) != 18:
        return False
    return any(region_matches(code[2:8], prefix) for prefix in prefixes)


def filter_body(body: Any, allowed: frozenset[str], *, bulk: bool, region_prefixes: Iterable[str] = ("*",)) -> Released:
    """Keep only licensed fields; for bulk pages also only licensed regions."""
    out = Released(body=None)
    prefixes = tuple(region_prefixes)
    if isinstance(body, dict) and isinstance(body.get("records"), list):
        records = body["records"]
        if bulk and "*" not in prefixes:
            records = [r for r in records if _in_regions(r, prefixes)]
        kept = [r for r in (_record(r, allowed, out) for r in records) if r is not None]
        envelope = {k: _scrub(v, k) for k, v in body.items() if k in ENVELOPE and k != "records"}
        out.body = {**envelope, "records": kept}
    elif isinstance(body, dict):
        out.body = _record(body, allowed, out) or {}
    else:
        out.body = {}
    return out


@dataclass(frozen=True)
class Filtered:
    """What one store answer releases under one licence's terms, ready for the response and its
    audit entry. The memo hands the same object to every request it serves: never mutated."""

    data: bytes  # the response body
    sha256: str  # its hex digest, the entry's body_sha256
    fields: list[str]  # sorted, as the entry lists them
    stripped: list[str]
    records: list[dict[str, str]]

    @classmethod
    def of(cls, data: bytes, released: Released) -> Filtered:
        return cls(data, hashlib.sha256(data).hexdigest(), sorted(released.fields), sorted(released.stripped),
                   list(released.records))


class ReleaseMemo:
    """Memoises `filter_body` + serialisation, keyed by the licence's field set and regions and
    the SHA-256 of the store's exact answer bytes.

    The filter is a pure function of those inputs, so a repeated read of an unchanged record
    under the same licence terms reuses the released bytes, fields and record digests instead
    of parsing, filtering, masking and re-serialising again. A changed answer or licence is a
    different key; the memo is bounded (least recently used out).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Filtered] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Filtered | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: tuple[Any, ...], value: Filtered) -> None:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
