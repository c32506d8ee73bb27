"""Personal identity numbers (GB 11643) in agency records: the `pii_exposed` rule.

A record exposes PII when a field named `*_id_number` has a value, or when a valid resident ID
number (real province, real birth date, MOD 11-2 check: credcore.codes) stands anywhere in a
value other than a code field. Code fields are skipped because an all-digit credit code can pass
the ID check by chance; the same digits in a free-text field are reported.

Scanning every value of a million records is the costly part of a check, so JSON Lines go
through `suspect` first: a byte-level pre-filter that says "certainly no ID number here" for
almost every clean line, and is never wrong in that direction for the spellings it knows
(ASCII digits, full-width digits, JSON escapes of full-width forms).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from consistency.records import CODE_FIELDS, is_personal_field
from credcore.codes import find_resident_ids, mask_resident_ids


# A cheap pre-filter for ID numbers in a raw UTF-8 line. One translate maps ASCII digits to "0",
# the UTF-8 bytes of full-width digits (EF BC 90-99) to "EBD", the letters of a JSON escape of a
# full-width form (\\uff..) to themselves, and everything else to a space. Then a run of 17 zeros
# (credit codes blanked out first: they are not ID numbers), a full-width digit, an escaped
# full-width form, or a field name ending in _id_number makes the line suspect, and it is then
# scanned field by field after NFKC.
def _mask_table() -> bytes:
    table = bytearray(b" " * 256)
    for byte in range(0x30, 0x3A):
        table[byte] = 0x30
    table[0xEF], table[0xBC] = ord("E"), ord("B")
    for byte in range(0x90, 0x9A):
        table[byte] = ord("D")
    for char in "\\uUfF":
        table[ord(char)] = ord(char.lower())
    return bytes(table)


_MASK = _mask_table()
_DIGIT_RUN = b"0" * 17


def suspect(raw: bytes, record: dict[str, Any]) -> bool:
    """False only when the raw line cannot hold an ID number outside its code fields."""
    masked = raw.translate(_MASK)
    if b"EBD" in masked or b"\\uff" in masked or b"_id_number" in raw:
        return True
    runs = masked.count(_DIGIT_RUN)
    if not runs:
        return False
    # Credit codes often start with 17 digits and are not ID numbers. JSON values are always
    # apart (quotes between them), so each code field accounts for at most one run; any run
    # beyond those is in another value.
    codes = 0
    for name in CODE_FIELDS:
        code = record.get(name)
        if type(code) is str and code[:17].isdigit():
            codes += 1
    return runs > codes


def _holds_id(value: Any) -> bool:
    if type(value) is not str:
        if value is None or isinstance(value, dict | list | bool):
            return False
        value = str(value)
    if len(value) < 17:
        return False
    if not value.isascii():
        value = unicodedata.normalize("NFKC", value)
    return bool(find_resident_ids(value))


def values_hold_id(record: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """True when one of `fields` (code fields aside) holds an ID number (authority records)."""
    return any(_holds_id(record.get(name)) for name in fields if name not in CODE_FIELDS)


def others_exposed(record: dict[str, Any], covered: frozenset[str]) -> bool:
    """True when a field outside `covered` shows an ID number. The checker's fast path uses it:
    the covered fields' values are the authority's, which are known to hold none."""
    for name in record.keys() - covered:
        value = record[name]
        if value is None or (type(value) is str and len(value) < 17
                             and not name.endswith("_id_number")):
            continue  # too short to hold an ID number, and not a personal field
        if is_personal_field(name):
            if value is not None and str(value).strip():
                return True
        elif name not in CODE_FIELDS and _holds_id(value):
            return True
    return False


def pii_fields(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of an agency record that show a personal identity number (values masked)."""
    exposed: list[dict[str, Any]] = []
    for name, value in record.items():
        if value is None or isinstance(value, dict | list | bool):
            continue
        text = value if isinstance(value, str) else str(value)
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        if is_personal_field(name):
            if text.strip():
                exposed.append({"field": name, "authority": None, "agency": "*" * len(text)})
        elif name not in CODE_FIELDS and find_resident_ids(text):
            exposed.append({"field": name, "authority": None, "agency": mask_resident_ids(text)})
    return exposed
