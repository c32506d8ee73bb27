"""Infringement tracing: from a leaked data set to the operators who received those records.

Every /v1 entry lists the records it released: `records: [{"id", "sha256"}]`, the sha256 being
the digest of the record's RFC 8785 canonical JSON AS RELEASED (after the licence's field
filter and ID-number masking). Two operators with different licences therefore receive the same
record under different digests, and any re-serialization of a received record (key order,
whitespace, number formatting, escapes) has the same canonical form, hence the same digest.

1. `read_leak` turns a leaked file into records: JSON Lines, a JSON array, or saved response
   bodies (`{"records": [...]}`), or CSV (a header row of field names). CSV loses JSON types, so
   each CSV row yields a few typed readings (numbers, booleans and empty cells as null, or all
   text) and a reading matches if any of its digests does.
2. Each record is looked up by digest (exact: this operator received exactly this content) and,
   as a fallback, by record id (the operator received that record, perhaps with other fields);
   an id match counts only if the entry released every field the leaked record has.
3. `rank` orders operators by exact matches, then id matches, then how many entries; each with
   its entries as evidence. The caller adds inclusion proofs against a signed checkpoint, so the
   evidence can be checked by anyone who trusts the log's key.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from credcore.canonical import digest_json
from credcore.errors import InvalidParameter

_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,14})(\.[0-9]+)?([eE][-+]?[0-9]+)?")
RECORD_KEYS = ("record_id", "jti")


@dataclass(frozen=True)
class LeakedRecord:
    """One leaked record: where it is in the file, its candidate digests, its id and its fields."""

    line: int
    digests: tuple[str, ...]
    record_id: str | None
    fields: frozenset[str]


def _record(line: int, readings: list[dict[str, Any]]) -> LeakedRecord:
    first = readings[0]
    rid = next((first[k] for k in RECORD_KEYS if isinstance(first.get(k), str) and first[k]), None)
    digests: list[str] = []
    for reading in readings:
        try:
            digest = digest_json(reading)
        except ValueError:
            continue
        if digest not in digests:
            digests.append(digest)
    return LeakedRecord(line, tuple(digests), rid, frozenset(first))


def _json_records(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [item for v in value for item in _json_records(v)]
    if isinstance(value, dict):
        if isinstance(value.get("records"), list) and set(value) <= {"uscc", "records", "next"}:
            return _json_records(value["records"])
        return [value]
    return []


def _typed(cell: str) -> Any:
    if cell == "":
        return None
    if cell in ("true", "false"):
        return cell == "true"
    if _NUMBER.fullmatch(cell):
        number = float(cell)
        return int(number) if number.is_integer() and "." not in cell and "e" not in cell.lower() else number
    if cell[:1] in "[{":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


def _csv_readings(row: Mapping[str, str]) -> list[dict[str, Any]]:
    typed = {k: _typed(v) for k, v in row.items()}
    text = {k: (None if v == "" else v) for k, v in row.items()}
    return [typed, text]


def read_leak(data: bytes, kind: str = "auto") -> list[LeakedRecord]:
    """The records of a leaked file; InvalidParameter('file') if it is neither JSON(L) nor CSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidParameter("file", "the leaked file is not UTF-8 text") from None
    if kind == "auto":
        kind = "json" if text.lstrip()[:1] in ("{", "[") else "csv"
    records: list[LeakedRecord] = []
    if kind == "json":
        try:
            whole: Any = json.loads(text)
            items = [(1, r) for r in _json_records(whole)]
        except ValueError:
            items = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    items += [(n, r) for r in _json_records(json.loads(line))]
                except ValueError:
                    raise InvalidParameter("file", f"line {n} of the leaked file is not JSON") from None
        records = [_record(n, [r]) for n, r in items]
    elif kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise InvalidParameter("file", "the leaked CSV file has no header row")
        for n, row in enumerate(reader, 2):
            if None in row:
                raise InvalidParameter("file", f"row {n} of the leaked CSV file has more cells than the header")
            records.append(_record(n, _csv_readings({k: v or "" for k, v in row.items()})))
    else:
        raise InvalidParameter("format", "the format must be auto, json or csv")
    if not records:
        raise InvalidParameter("file", "the leaked file holds no record")
    return records


@dataclass
class Hit:
    """An audit entry that released a leaked record: how it matched and which leaked records."""

    index: int
    entry: dict[str, Any]
    exact: set[int] = field(default_factory=set)  # leaked lines matched by digest
    by_id: set[int] = field(default_factory=set)  # leaked lines matched by record id only


@dataclass
class Suspect:
    operator: str | None
    exact: set[int] = field(default_factory=set)
    by_id: set[int] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)

    @property
    def score(self) -> tuple[int, int, int]:
        return len(self.exact), len(self.by_id - self.exact), len(self.hits)


def match(leaked: Iterable[LeakedRecord], entries: Mapping[int, dict[str, Any]]) -> dict[int, Hit]:
    """Which entries released which leaked records (pure: `entries` are the candidate entries)."""
    by_digest: dict[str, list[LeakedRecord]] = {}
    by_id: dict[str, list[LeakedRecord]] = {}
    for record in leaked:
        for digest in record.digests:
            by_digest.setdefault(digest, []).append(record)
        if record.record_id:
            by_id.setdefault(record.record_id, []).append(record)
    hits: dict[int, Hit] = {}
    for index, entry in entries.items():
        if entry.get("decision") != "allow":
            continue
        raw = entry.get("records")
        released: list[Any] = raw if isinstance(raw, list) else []
        fields = set(entry.get("fields") or ())
        for item in released:
            if not isinstance(item, dict):
                continue
            for record in by_digest.get(str(item.get("sha256")), []):
                hits.setdefault(index, Hit(index, entry)).exact.add(record.line)
            for record in by_id.get(str(item.get("id") or ""), []):
                if record.fields <= fields:  # the operator received every field that leaked
                    hits.setdefault(index, Hit(index, entry)).by_id.add(record.line)
    return hits


def rank(hits: Mapping[int, Hit]) -> list[Suspect]:
    """Operators ordered by how much of the leak they received: exact matches first."""
    suspects: dict[str | None, Suspect] = {}
    for hit in sorted(hits.values(), key=lambda h: h.index):
        operator = hit.entry.get("client_id")
        suspect = suspects.setdefault(operator, Suspect(operator))
        suspect.exact |= hit.exact
        suspect.by_id |= hit.by_id
        suspect.hits.append(hit)
    return sorted(suspects.values(), key=lambda s: s.score, reverse=True)


def lookup_keys(leaked: Iterable[LeakedRecord]) -> tuple[list[str], list[str]]:
    """The distinct digests and record ids to look up in the log."""
    digests: dict[str, None] = {}
    ids: dict[str, None] = {}
    for record in leaked:
        digests.update(dict.fromkeys(record.digests))
        if record.record_id:
            ids[record.record_id] = None
    return list(digests), list(ids)
