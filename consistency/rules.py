"""The finding rules (CONTRACTS section 5), applied to one agency's records as they stream in.

Pure: lines or records in (with their line numbers), findings out; the authority index and the
grace period are given. For each agency record, in this order:

1. not a JSON object, no valid key, or a bad value -> `malformed` (and nothing else is judged);
2. a key already seen in this agency's snapshot -> `malformed` (a duplicate, naming the first line);
3. no authority record with the key -> `not_in_authority`;
4. compared fields that differ after normalization -> one `content_mismatch` listing them;
5. another `disclosure_end` -> `duration_mismatch`;
6. shown before `disclosure_start` -> `shown_before_disclosure`; shown past the grace after it
   became due off -> `shown_after_removal` or `shown_after_expiry`, with the missed deadline;
7. an ID number anywhere (for malformed records too) -> `pii_exposed`.

At the end, every record the authority discloses at `as_of` that the agency did not show is
`missing` (coverage, not a violation). Reports never repeat an ID number: values are masked.
"""

from __future__ import annotations

import datetime as dt
from array import array
from typing import Any

from consistency.calendar import deadline
from consistency.compare import agency_end, check_start, differences, lifecycle_fields
from consistency.index import (
    DISCLOSED,
    END_ABSENT,
    EXPIRED,
    HOLDS_ID,
    NOT_YET,
    REMOVED,
    SLOW,
    STATE_MASK,
    AuthorityIndex,
    key_text,
    raw_hash,
)
from consistency.normalize import (
    BoundedMemo,
    norm_decision_number,
)
from consistency.pii import others_exposed, pii_fields, suspect
from consistency.records import (
    FAST_FIELDS,
    RecordProblem,
    display,
    key_of,
    loads_line,
    validate,
)

VIOLATION_CLASSES = (
    "content_mismatch", "duration_mismatch", "shown_after_expiry", "shown_after_removal",
    "shown_before_disclosure", "not_in_authority", "pii_exposed", "malformed",
)
FINDING_CLASSES = (*VIOLATION_CLASSES, "missing")
_END_MEMO = BoundedMemo(50_000)  # disclosure_end spelling -> day ordinal (valid ones only)
# Fields whose values the fast path has matched to the authority's, per kind.
_COVERED = {kind: frozenset(fields) | {"kind", "uscc", "decision_number"}
            for kind, fields in FAST_FIELDS.items()}
_FAST_KINDS = frozenset(("penalty", "licence", "serious_untrustworthy"))

class BadLine:
    """A line that could not even be decoded; `reason` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _key_dict(key: tuple[str, str, str]) -> dict[str, str]:
    return {"kind": key[0], "uscc": key[1], "decision_number": key[2]}


class AgencyCheck:
    """Judges one agency's snapshot against the authority index."""

    def __init__(self, name: str, index: AuthorityIndex, grace_working_days: int) -> None:
        self.name = name
        self.index = index
        self.grace = grace_working_days
        self.records = 0
        self.findings: list[dict[str, Any]] = []
        self._seen = array("i", bytes(4 * len(index)))  # first line showing each record
        self._unmatched: dict[str, int] = {}

    # --- input ---------------------------------------------------------------------------

    def feed(self, line: int, payload: bytes | dict[str, Any] | BadLine) -> None:
        """One item from a source: a raw UTF-8 line, a record parsed already, or a bad line."""
        if type(payload) is bytes:
            self.feed_line(line, payload)
        elif isinstance(payload, BadLine):
            self.records += 1
            self._malformed(line, payload.reason)
        else:
            self.records += 1
            self.feed_record(line, payload)  # type: ignore[arg-type]  # a dict here

    def feed_line(self, line: int, raw: bytes) -> None:
        """A JSON Lines line (UTF-8 bytes, no line end). This is the hot path: a line whose
        key is already in normal form and whose compared values are the authority's raw
        values takes no normalization beyond its key."""
        self.records += 1
        try:
            record = loads_line(raw)
        except UnicodeDecodeError:
            self._malformed(line, "the line is not valid UTF-8")
            return
        except ValueError as exc:
            reason = getattr(exc, "msg", None) or str(exc)
            column = getattr(exc, "colno", None)
            where = f" at column {column}" if column else ""
            self._malformed(line, f"not valid JSON ({reason}{where})")
            return
        if type(record) is not dict:
            self._malformed(line, "a record must be a JSON object")
            return
        kind = record.get("kind")
        uscc = record.get("uscc")
        number = record.get("decision_number")
        key: tuple[str, str, str] | None = None
        if kind in _FAST_KINDS and type(uscc) is str and type(number) is str and (
                uscc.isascii() and uscc.isalnum() and (uscc.isupper() or uscc.isdigit())):
            number = norm_decision_number(number)
            if number:
                key = (kind, uscc, number)
        if key is None:
            try:
                key = key_of(record)
            except RecordProblem as problem:
                self._malformed(line, str(problem), record=record)
                return
        index = self.index
        ordinal = index.keys.get(f"{key[0]}\x1f{key[1]}\x1f{key[2]}")
        if ordinal is not None and index.state[ordinal] == DISCLOSED and not self._seen[
                ordinal] and raw_hash(key[0], record) == index.hashes[ordinal]:
            # The commonest case, inlined: a disclosed record shown with the authority's
            # values. Only the stated end and the fields beyond the compared ones are left.
            end = record.get("disclosure_end")
            if (end is None or (type(end) is str and _END_MEMO.get(end) == index.end[ordinal])
                    ) and "disclosure_start" not in record:
                self._seen[ordinal] = line
                if others_exposed(record, _COVERED[key[0]]):
                    self._pii(line, key, record)
                return
        if ordinal is None:
            self._unknown(line, key, record)
        elif self._matched(line, key, ordinal, record) and not (
                self.index.state[ordinal] & HOLDS_ID):
            # The compared values are the authority's, which hold no ID number: only the
            # agency's other fields can.
            if others_exposed(record, _COVERED[key[0]]):
                self._pii(line, key, record)
            return
        if suspect(raw, record):
            self._pii(line, key, record)

    def feed_record(self, line: int, record: dict[str, Any]) -> None:
        """One record parsed already (a CSV row, a record of a paged feed)."""
        if not isinstance(record, dict):
            self._malformed(line, "a record must be a JSON object")
            return
        try:
            key = key_of(record)
        except RecordProblem as problem:
            self._malformed(line, str(problem), record=record)
            return
        ordinal = self.index.keys.get(key_text(*key))
        if ordinal is None:
            self._unknown(line, key, record)
        else:
            self._matched(line, key, ordinal, record)
        self._pii(line, key, record)

    def _unknown(self, line: int, key: tuple[str, str, str], record: dict[str, Any]) -> None:
        try:
            validate(record)
        except RecordProblem as problem:
            self._malformed(line, str(problem), key=key)
            return
        text = key_text(*key)
        first = self._unmatched.get(text)
        if first is not None:
            self._malformed(line, f"duplicate key: the record on line {first} has it too", key=key)
            return
        self._unmatched[text] = line
        self._add("not_in_authority", key=key, line=line)

    def _matched(self, line: int, key: tuple[str, str, str], ordinal: int,
                 record: dict[str, Any]) -> bool:
        """Judge a record the authority has; True when its compared values are the
        authority's raw values (the fast path)."""
        index = self.index
        authority: dict[str, Any] | None = None
        fields: list[dict[str, Any]] = []
        state = index.state[ordinal]
        fast = not state & SLOW and raw_hash(key[0], record) == index.hashes[ordinal]
        try:
            if not fast:
                validate(record)
                authority = index.record(ordinal)
                fields = differences(authority, record)
            stated_end = None
            end_value = record.get("disclosure_end")
            if end_value is not None:
                stated_end = _END_MEMO.get(end_value) if type(end_value) is str else None
                if stated_end is None:
                    stated_end = agency_end(record)
                    if stated_end is not None and type(end_value) is str:
                        _END_MEMO.put(end_value, stated_end)
            if "disclosure_start" in record:
                check_start(record)
        except RecordProblem as problem:
            self._malformed(line, str(problem), key=key)
            return False
        first = self._seen[ordinal]
        if first:
            self._malformed(line, f"duplicate key: the record on line {first} has it too", key=key)
            return False
        self._seen[ordinal] = line
        state &= STATE_MASK
        if not fields and state == DISCLOSED and (
                stated_end is None or stated_end == index.end[ordinal]
                or index.end[ordinal] == END_ABSENT):
            return fast  # the common case: nothing to report
        findings: list[tuple[str, list[dict[str, Any]], str | None]] = []
        if fields:
            findings.append(("content_mismatch", fields, None))
        authority_end = index.end[ordinal]
        if stated_end is not None and authority_end != END_ABSENT and stated_end != authority_end:
            findings.append(("duration_mismatch", [self._end_field(ordinal, record)], None))
        if state == NOT_YET:
            findings.append(("shown_before_disclosure", [], None))
        elif state in (REMOVED, EXPIRED) and index.as_of_day > index.due_off[ordinal]:
            last_day = deadline(dt.date.fromordinal(index.due_off[ordinal]), self.grace)
            if index.as_of_day > last_day.toordinal():
                cls = "shown_after_removal" if state == REMOVED else "shown_after_expiry"
                findings.append((cls, [], last_day.isoformat()))
        if not findings:
            return fast
        if authority is None:
            authority = index.record(ordinal)
        for cls, found, last in findings:
            if not found:
                found = lifecycle_fields(cls, authority, record)
            self._add(cls, key=key, record_id=authority.get("record_id"), line=line,
                      fields=found, deadline=last)
        return fast

    def _end_field(self, ordinal: int, record: dict[str, Any]) -> dict[str, Any]:
        authority = self.index.record(ordinal)
        return {"field": "disclosure_end", "authority": authority.get("disclosure_end"),
                "agency": display(record.get("disclosure_end"))}

    def _pii(self, line: int, key: tuple[str, str, str] | None, record: dict[str, Any]) -> None:
        exposed = pii_fields(record)
        if exposed:
            self._add("pii_exposed", key=key, line=line, fields=exposed)

    # --- findings ------------------------------------------------------------------------

    def _malformed(self, line: int, reason: str, *, key: tuple[str, str, str] | None = None,
                   record: dict[str, Any] | None = None) -> None:
        self._add("malformed", key=key, line=line, reason=reason)
        if record is not None:
            self._pii(line, key, record)

    def _add(self, cls: str, *, key: tuple[str, str, str] | None = None,
             record_id: Any = None, line: int | None = None,
             fields: list[dict[str, Any]] | None = None, deadline: str | None = None,
             reason: str | None = None) -> None:
        finding: dict[str, Any] = {"class": cls}
        if key is not None:
            finding["key"] = _key_dict(key)
        if record_id is not None:
            finding["record_id"] = record_id
        if line is not None:
            finding["line"] = line
        if fields:
            finding["fields"] = fields
        if deadline is not None:
            finding["deadline"] = deadline
        if reason is not None:
            finding["reason"] = reason
        self.findings.append(finding)

    def finish(self) -> list[dict[str, Any]]:
        """Add the `missing` findings (records disclosed at `as_of` the agency did not show)."""
        index, seen = self.index, self._seen
        for ordinal in index.disclosed:
            if not seen[ordinal]:
                authority = index.record(ordinal)
                self._add("missing", key=key_of(authority),
                          record_id=authority.get("record_id"))
        return self.findings

