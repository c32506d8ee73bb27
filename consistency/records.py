"""Disclosure records (CONTRACTS section 5): field catalogue, validation, CSV header mapping.

A record is a flat JSON object. Its key is `(kind, uscc, decision_number)`, normalized. Fields
fall into four groups, and the group decides what the checker does with them:

- key fields: matched, never compared;
- lifecycle fields (`record_id`, `status`, `removed_at`, `disclosure_start`): agencies need not
  show them, so they are never compared; `disclosure_end` is compared on its own (duration);
- personal fields (`*_id_number`): never compared; an agency that shows one exposes PII;
- every other field: compared after normalization when both sides have a value.

Agency exports arrive as CSV with the national 双公示 standard's Chinese headers or its field
codes (CF_* for penalties, XK_* for licences); `map_headers` turns them into our field names.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from consistency.normalize import (
    ValueProblem,
    amount_cached,
    as_text,
    date_ordinal_cached,
    norm_code,
    norm_decision_number,
    norm_text,
    parse_instant,
)
from credcore.clock import CST

KINDS = ("penalty", "licence", "serious_untrustworthy")
STATUSES = ("disclosed", "repaired", "withdrawn")
KEY_FIELDS = ("kind", "uscc", "decision_number")
LIFECYCLE_FIELDS = frozenset({"record_id", "status", "removed_at", "disclosure_start"})
DATE_FIELDS = frozenset(
    {"decision_date", "disclosure_end", "valid_from", "valid_until", "penalty_valid_until"}
)
AMOUNT_FIELDS = frozenset({"fine_amount", "confiscated_amount"})
# Code fields hold credit codes: normalized as codes and never scanned for ID numbers, because
# an all-digit credit code can pass the ID check character by chance.
CODE_FIELDS = frozenset({"uscc", "authority_uscc", "data_source_uscc"})

# The compared fields the contract and the 双公示 standard define for each kind, in a fixed
# order: the checker's fast path hashes a record's raw values in this order (consistency/index.py).
_COMMON = ("subject_name", "subject_category", "legal_representative",
           "legal_representative_id_type", "authority", "authority_uscc", "decision_date",
           "data_source", "data_source_uscc", "remarks")
FAST_FIELDS: dict[str, tuple[str, ...]] = {
    "penalty": (*_COMMON, "violation_type", "violation_facts", "legal_basis", "penalty_category",
                "penalty_content", "fine_amount", "confiscated_amount", "licence_suspended",
                "penalty_valid_until", "severity"),
    "licence": (*_COMMON, "licence_document_name", "licence_category", "licence_name",
                "licence_number", "licence_content", "valid_from", "valid_until",
                "licence_status"),
    "serious_untrustworthy": (*_COMMON, "list_name", "listing_reason"),
}
COMPARED_FIELDS = tuple(dict.fromkeys(f for fields in FAST_FIELDS.values() for f in fields))
# What the fast path may ignore, per kind: an authority record with any other field takes the
# slow path, so no field of it escapes comparison.
_NOT_COMPARED = LIFECYCLE_FIELDS | frozenset(KEY_FIELDS) | {"disclosure_end"}
KNOWN_FIELDS = {kind: _NOT_COMPARED | frozenset(fields) for kind, fields in FAST_FIELDS.items()}
ALL_KNOWN_FIELDS = _NOT_COMPARED | frozenset(COMPARED_FIELDS)

def _stdlib_loads(raw: bytes) -> Any:
    """A JSON value from one line's UTF-8 bytes (ValueError when it is not JSON)."""
    return json.loads(raw.decode("utf-8"))


# orjson parses a line about twice as fast as the json module; it is optional.
loads_line: Callable[[bytes], Any] = _stdlib_loads
try:
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    loads_line = _orjson_loads


class RecordProblem(ValueError):
    """Why a line is not a valid record, as one phrase naming the field."""


def is_personal_field(name: str) -> bool:
    """Fields that carry a personal identity number (the standard's CF_FR_ZJHM and kin)."""
    return name.endswith("_id_number")


def key_of(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """The normalized matching key, or RecordProblem."""
    kind = record.get("kind")
    if not isinstance(kind, str) or norm_text(kind) not in KINDS:
        raise RecordProblem(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    uscc = record.get("uscc")
    number = record.get("decision_number")
    if not isinstance(uscc, str) or not norm_code(uscc):
        raise RecordProblem("uscc is missing or not a string")
    if not isinstance(number, str | int) or isinstance(number, bool):
        raise RecordProblem("decision_number is missing or not a string")
    dn = norm_decision_number(number)
    if not dn:
        raise RecordProblem("decision_number is empty")
    return norm_text(kind), norm_code(uscc), dn


def normalize_value(name: str, value: Any) -> Any:
    """The comparable form of one field's value; None when the value counts as not shown."""
    if value is None:
        return None
    try:
        if name in DATE_FIELDS:
            if isinstance(value, str) and not value.strip():
                return None
            return date_ordinal_cached(value)
        if name in AMOUNT_FIELDS:
            if isinstance(value, str) and not value.strip():
                return None
            return amount_cached(value)
        if name in CODE_FIELDS:
            return norm_code(value) or None
        return norm_text(value) or None
    except ValueProblem as problem:
        raise RecordProblem(f"{name}: {problem}") from None


_SCALARS = (str, int, float, bool)
_CHECKED = DATE_FIELDS | AMOUNT_FIELDS


def validate(record: Any) -> tuple[str, str, str]:
    """Check a whole record (key, value types, dates, amounts) and return its key.

    Text values are only type-checked here: normalizing them is the costly part of a check,
    and a text value cannot be invalid, only different.
    """
    if not isinstance(record, dict):
        raise RecordProblem("a record must be a JSON object")
    key = key_of(record)
    for name, value in record.items():
        if value is None:
            continue
        if type(value) not in _SCALARS:
            if name in ("removed_at", "status"):
                continue  # the authority's lifecycle is checked by lifecycle_problem
            raise RecordProblem(f"{name}: must be a string, a number or null")
        if name in _CHECKED:
            normalize_value(name, value)
        elif name == "disclosure_start":
            start_day(value)
    return key


def start_day(value: Any) -> int:
    """The CST day ordinal of a disclosure_start: a date, or an RFC 3339 time."""
    try:
        return date_ordinal_cached(value)
    except ValueProblem:
        pass
    try:
        return parse_instant(value).astimezone(CST).toordinal()
    except ValueProblem as problem:
        raise RecordProblem(f"disclosure_start: {problem}") from None


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every compared field with a shown value, normalized (RecordProblem on a bad value)."""
    out: dict[str, Any] = {}
    for name, value in record.items():
        if name in LIFECYCLE_FIELDS or name in KEY_FIELDS or name == "disclosure_end":
            continue
        if is_personal_field(name):
            continue
        normalized = normalize_value(name, value)
        if normalized is not None:
            out[name] = normalized
    return out


def lifecycle_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with an authority record's lifecycle fields, or None."""
    status = record.get("status", "disclosed")
    if status not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)} (got {status!r})"
    removed = record.get("removed_at")
    if removed is not None:
        try:
            parse_instant(removed)
        except ValueProblem as problem:
            return f"removed_at: {problem}"
    elif status != "disclosed":
        return f"removed_at is null but status is {status!r}"
    return None


# --- CSV headers -------------------------------------------------------------------------

_PENALTY_HEADERS = {
    "行政相对人名称": "subject_name", "cf_xdr_mc": "subject_name",
    "行政相对人类别": "subject_category", "cf_xdr_lb": "subject_category",
    "统一社会信用代码": "uscc", "行政相对人代码_1(统一社会信用代码)": "uscc",
    "行政相对人统一社会信用代码": "uscc", "cf_xdr_shxym": "uscc",
    "法定代表人": "legal_representative", "cf_frdb": "legal_representative",
    "法定代表人证件类型": "legal_representative_id_type",
    "cf_fr_zjlx": "legal_representative_id_type",
    "法定代表人证件号码": "legal_representative_id_number",
    "cf_fr_zjhm": "legal_representative_id_number",
    "行政处罚决定书文号": "decision_number", "cf_wsh": "decision_number",
    "违法行为类型": "violation_type", "cf_wfxw": "violation_type",
    "违法事实": "violation_facts", "cf_sy": "violation_facts",
    "处罚依据": "legal_basis", "cf_yj": "legal_basis",
    "处罚类别": "penalty_category", "cf_cflb": "penalty_category",
    "处罚内容": "penalty_content", "cf_nr": "penalty_content",
    "罚款金额(万元)": "fine_amount", "罚款金额": "fine_amount", "cf_nr_fk": "fine_amount",
    "没收违法所得、没收非法财物的金额(万元)": "confiscated_amount",
    "没收违法所得没收非法财物的金额(万元)": "confiscated_amount",
    "cf_nr_wfff": "confiscated_amount",
    "暂扣或吊销证照名称及编号": "licence_suspended", "cf_nr_zkdx": "licence_suspended",
    "处罚决定日期": "decision_date", "cf_jdrq": "decision_date",
    "处罚有效期": "penalty_valid_until", "cf_yxq": "penalty_valid_until",
    "公示截止期": "disclosure_end", "cf_gsjzq": "disclosure_end",
    "处罚机关": "authority", "cf_cfjg": "authority",
    "处罚机关统一社会信用代码": "authority_uscc", "cf_cfjgdm": "authority_uscc",
    "数据来源单位": "data_source", "cf_sjly": "data_source",
    "数据来源单位统一社会信用代码": "data_source_uscc", "cf_sjlydm": "data_source_uscc",
}
_LICENCE_HEADERS = {
    "xk_xdr_mc": "subject_name", "xk_xdr_lb": "subject_category", "xk_xdr_shxym": "uscc",
    "xk_frdb": "legal_representative", "xk_fr_zjlx": "legal_representative_id_type",
    "xk_fr_zjhm": "legal_representative_id_number",
    "行政许可决定文书名称": "licence_document_name", "xk_xkws": "licence_document_name",
    "行政许可决定文书号": "decision_number", "xk_wsh": "decision_number",
    "许可类别": "licence_category", "xk_xklb": "licence_category",
    "许可证书名称": "licence_name", "xk_xkzs": "licence_name",
    "许可编号": "licence_number", "xk_xkbh": "licence_number",
    "许可内容": "licence_content", "xk_nr": "licence_content",
    "许可决定日期": "decision_date", "xk_jdrq": "decision_date",
    "有效期自": "valid_from", "xk_yxqz": "valid_from",
    "有效期至": "valid_until", "xk_yxqzi": "valid_until",
    "许可机关": "authority", "xk_xkjg": "authority",
    "许可机关统一社会信用代码": "authority_uscc", "xk_xkjgdm": "authority_uscc",
    "当前状态": "licence_status", "xk_zt": "licence_status",
    "数据来源单位": "data_source", "xk_lydw": "data_source",
    "数据来源单位统一社会信用代码": "data_source_uscc", "xk_lydwdm": "data_source_uscc",
}
_COMMON_HEADERS = {"备注": "remarks", "bz": "remarks", "类型": "kind", "信息类别": "kind"}
# Headers whose presence says which kind of record a file without a `kind` column holds.
_PENALTY_ONLY = frozenset(_PENALTY_HEADERS) - frozenset(_LICENCE_HEADERS) - {
    "行政相对人名称", "行政相对人类别", "统一社会信用代码", "行政相对人代码_1(统一社会信用代码)",
    "行政相对人统一社会信用代码", "法定代表人", "法定代表人证件类型", "法定代表人证件号码",
}
_LICENCE_ONLY = frozenset(_LICENCE_HEADERS) - frozenset(_PENALTY_HEADERS)
KIND_ALIASES = {"行政处罚": "penalty", "行政许可": "licence",
                "严重失信主体名单": "serious_untrustworthy"}
# A fine column in yuan rather than 10,000 CNY: its plain numbers get the 元 suffix.
_YUAN_HEADERS = frozenset({"罚款金额(元)"})


def _header_key(header: str) -> str:
    text = unicodedata.normalize("NFKC", header.lstrip("\ufeff"))
    return "".join(text.split()).lower()


class HeaderMap:
    """How one CSV file's columns become record fields (and the kind, when the file implies it)."""

    def __init__(self, headers: Sequence[str]) -> None:
        keys = [_header_key(h) for h in headers]
        own = set(ALL_KNOWN_FIELDS) | {"legal_representative_id_number"}
        self.fields: list[str | None] = []
        self.yuan: set[int] = set()
        for index, key in enumerate(keys):
            if key in _YUAN_HEADERS:
                self.fields.append("fine_amount")
                self.yuan.add(index)
                continue
            field = (_PENALTY_HEADERS.get(key) or _LICENCE_HEADERS.get(key)
                     or _COMMON_HEADERS.get(key))
            if field is None and (key in own or key.endswith("_id_number")):
                field = key
            self.fields.append(field)
        penalty = any(k in _PENALTY_ONLY for k in keys)
        licence = any(k in _LICENCE_ONLY for k in keys)
        self.kind = "penalty" if penalty and not licence else "licence" if licence else None

    def record(self, row: Sequence[str]) -> dict[str, Any]:
        """One CSV row as a record; empty cells are left out (an empty cell is not shown)."""
        out: dict[str, Any] = {}
        if self.kind is not None:
            out["kind"] = self.kind
        for index, cell in enumerate(row):
            field = self.fields[index] if index < len(self.fields) else None
            if field is None or not cell.strip():
                continue
            if index in self.yuan and not cell.strip().endswith("元"):
                cell = cell.strip() + "元"
            if field == "kind":
                cell = KIND_ALIASES.get(norm_text(cell), cell)
            out[field] = cell
        return out


def display(value: Any) -> Any:
    """A value as reports show it: JSON scalars as they are, anything else as text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return as_text(value)
