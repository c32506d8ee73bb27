"""The authority index: a million disclosure records in a few hundred bytes each.

The checker needs, for every authority record, its key and its state at the check's `as_of`;
it needs the record's values only when an agency's copy differs. So the index keeps per record:

- the normalized key as one string (a dict from key to ordinal);
- in parallel arrays indexed by the record's ordinal: where its line lies in a file (to read it
  again when a finding needs its values), its line number, its state at `as_of`, the day it became
  due off, its disclosure start and end, and one 64-bit hash of its raw compared values.

The raw-values hash is the fast path: an agency line whose compared values are the authority's,
byte for byte, hashes the same and needs no normalization at all. Anything else takes the slow
path, which re-reads the authority line and compares field by field after normalization.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from array import array
from typing import Any

from consistency.normalize import date_ordinal_cached, parse_instant
from consistency.pii import values_hold_id
from consistency.records import (
    FAST_FIELDS,
    KNOWN_FIELDS,
    RecordProblem,
    is_personal_field,
    lifecycle_problem,
    start_day,
    validate,
)
from credcore.clock import CST, cst_date

DISCLOSED, NOT_YET, REMOVED, EXPIRED = 0, 1, 2, 3
END_ABSENT, END_NULL = 0, -1  # disclosure_end codes besides a date ordinal
SLOW = 0x80  # state flag: the record has fields the fast path does not cover
HOLDS_ID = 0x40  # state flag: one of its compared values holds an ID number
STATE_MASK = 0x3F


def key_text(kind: str, uscc: str, decision_number: str) -> str:
    """The index key of a normalized `(kind, uscc, decision_number)` (a unit separator between:
    no normalized value contains one)."""
    return f"{kind}\x1f{uscc}\x1f{decision_number}"


def raw_hash(kind: str, record: dict[str, Any]) -> int:
    """A hash of the raw compared values in a fixed order: equal raw values, equal hash."""
    return hash(tuple(map(record.get, FAST_FIELDS[kind])))


class LineStore:
    """Where authority lines can be read again: the source file itself, or a spool file for
    records that came from a URL (so the index never holds record text in memory)."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDONLY) if path else -1
        self._spool = tempfile.TemporaryFile(prefix="credgate-authority-")  # noqa: SIM115
        self._spool_size = 0

    def spool(self, data: bytes) -> int:
        """Append a line to the spool; returns its location (negative: in the spool)."""
        where = self._spool_size
        self._spool.write(data)
        self._spool_size += len(data)
        return -where - 1

    def read(self, location: int, length: int) -> bytes:
        if location >= 0:
            return os.pread(self._fd, length, location)
        self._spool.flush()
        return os.pread(self._spool.fileno(), length, -location - 1)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._spool.close()


class AuthorityIndex:
    """Authority records by key, with their state at `as_of`."""

    def __init__(self, as_of: dt.datetime, store: LineStore) -> None:
        self.as_of = as_of
        self.as_of_day = cst_date(as_of).toordinal()
        self.store = store
        self.keys: dict[str, int] = {}
        self.locations = array("q")
        self.lengths = array("i")
        self.lines = array("i")
        self.hashes = array("q")
        self.state = bytearray()
        self.due_off = array("i")
        self.start = array("i")
        self.end = array("i")
        self.disclosed = array("i")  # ordinals of the records disclosed at as_of, in order
        self.duplicates: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.state)

    def add(self, line: int, record: Any, location: int, length: int) -> None:
        """Index one authority record; RecordProblem when it is not a valid record."""
        kind, uscc, number = validate(record)
        problem = lifecycle_problem(record)
        if problem:
            raise RecordProblem(problem)
        digest = key_text(kind, uscc, number)
        first = self.keys.get(digest)
        if first is not None:
            # The first record of a key stays the authority's word; later ones are reported.
            self.duplicates.append({
                "key": {"kind": kind, "uscc": uscc, "decision_number": number},
                "line": line, "first_line": self.lines[first],
            })
            return
        self.keys[digest] = len(self.state)
        self.locations.append(location)
        self.lengths.append(length)
        self.lines.append(line)
        self.hashes.append(raw_hash(kind, record))
        state, due_off, start, end = self._lifecycle(record)
        known = KNOWN_FIELDS[kind]
        if not record.keys() <= known and any(
                name not in known and not is_personal_field(name) for name in record):
            state |= SLOW
        if values_hold_id(record, FAST_FIELDS[kind]):
            state |= HOLDS_ID
        if state & STATE_MASK == DISCLOSED:  # only these can be `missing`
            self.disclosed.append(len(self.state))
        self.state.append(state)
        self.due_off.append(due_off)
        self.start.append(start)
        self.end.append(end)

    def _lifecycle(self, record: dict[str, Any]) -> tuple[int, int, int, int]:
        """(state, due-off day, disclosure start day, disclosure end code) at `as_of`."""
        end_value = record.get("disclosure_end", ...)
        if end_value is ...:
            end = END_ABSENT
        elif end_value is None or (isinstance(end_value, str) and not end_value.strip()):
            end = END_NULL
        else:
            end = date_ordinal_cached(end_value)
        start_value = record.get("disclosure_start")
        start = 0
        if start_value is not None and not (isinstance(start_value, str) and not start_value):
            start = start_day(start_value)
        removed_value = record.get("removed_at")
        removed = parse_instant(removed_value) if removed_value is not None else None
        # Due off at the earlier of removed_at and the end of the disclosure_end day (CST).
        expiry = None
        if end > 0:
            expiry = dt.datetime.combine(dt.date.fromordinal(end + 1), dt.time(), CST)
        if removed is not None and (expiry is None or removed < expiry):
            if removed <= self.as_of:
                return REMOVED, cst_date(removed).toordinal(), start, end
        elif expiry is not None and expiry <= self.as_of:
            return EXPIRED, end, start, end
        if start and self.as_of_day < start:
            return NOT_YET, 0, start, end
        return DISCLOSED, 0, start, end

    def state_of(self, ordinal: int) -> int:
        return self.state[ordinal] & STATE_MASK

    def record(self, ordinal: int) -> dict[str, Any]:
        """The authority's record, read again from its line."""
        data = self.store.read(self.locations[ordinal], self.lengths[ordinal])
        value: dict[str, Any] = json.loads(data.decode("utf-8"))
        return value

