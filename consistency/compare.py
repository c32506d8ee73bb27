"""Field comparisons for matched records: content, disclosure end and the lifecycle fields a
finding shows side by side. Pure functions over the two records' dicts."""

from __future__ import annotations

from typing import Any

from consistency.normalize import ValueProblem, date_ordinal_cached, parse_instant
from consistency.records import (
    KEY_FIELDS,
    LIFECYCLE_FIELDS,
    RecordProblem,
    display,
    is_personal_field,
    normalize_value,
)
from credcore.codes import mask_resident_ids

_NOT_COMPARED = LIFECYCLE_FIELDS | frozenset(KEY_FIELDS) | {"disclosure_end"}


def masked(value: Any) -> Any:
    """A value as a report shows it, with any ID number in it masked."""
    return mask_resident_ids(value) if isinstance(value, str) else display(value)

def differences(authority: dict[str, Any], record: dict[str, Any]) -> list[dict[str, Any]]:
    """Compared fields that differ after normalization; equal raw values are skipped
    without normalizing (the costly NFKC of long Chinese texts)."""
    differ = []
    for name, value in record.items():
        theirs = authority.get(name)
        if value is None or theirs is None or name in _NOT_COMPARED or is_personal_field(name):
            continue
        if value == theirs and type(value) is type(theirs):
            continue
        ours, expected = normalize_value(name, value), normalize_value(name, theirs)
        if ours is not None and expected is not None and ours != expected:
            differ.append({"field": name, "authority": display(theirs),
                           "agency": masked(value)})
    return differ


def agency_end(record: dict[str, Any]) -> int | None:
    """The agency's disclosure_end as a day ordinal; None when it does not state one."""
    value = record.get("disclosure_end")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return date_ordinal_cached(value)
    except ValueProblem as problem:
        raise RecordProblem(f"disclosure_end: {problem}") from None


def check_start(record: dict[str, Any]) -> None:
    """An agency's disclosure_start is not compared, but an impossible one is malformed."""
    value = record.get("disclosure_start")
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    try:
        date_ordinal_cached(value)
    except ValueProblem:
        try:
            parse_instant(value)
        except ValueProblem as problem:
            raise RecordProblem(f"disclosure_start: {problem}") from None


def lifecycle_fields(cls: str, authority: dict[str, Any],
                      record: dict[str, Any]) -> list[dict[str, Any]]:
    names = {
        "shown_before_disclosure": ("disclosure_start",),
        "shown_after_removal": ("status", "removed_at"),
        "shown_after_expiry": ("disclosure_end",),
    }[cls]
    return [{"field": name, "authority": display(authority.get(name)),
             "agency": display(record.get(name))} for name in names]
