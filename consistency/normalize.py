"""Value normalization (CONTRACTS section 5): two values that differ only in format are equal.

Rules, applied to every compared value:

- text: Unicode NFKC (full-width letters, digits and punctuation become their plain forms, the
  ideographic space becomes a space), outer whitespace trimmed, inner runs collapsed to one space;
  a value that is empty after this counts as not shown;
- codes (`uscc`, `authority_uscc`): as text, upper-cased, with no inner whitespace;
- decision numbers: as text, and the bracket pairs 〔〕 [] ［］ () （） 【】 are one pair, 〔〕;
- dates: `YYYY-MM-DD`, `YYYY/MM/DD`, `YYYY.MM.DD`, `YYYYMMDD` and `YYYY年M月D日` (months and days
  with or without a leading zero) are the same date; an impossible date (2025-02-30) is an error;
- amounts: decimals in units of 10,000 CNY (万元); a string ending in 万元 is taken as is, one
  ending in 元 is divided by 10,000; thousands separators are ignored; negative amounts are errors.

Every function here is pure. The `*_cached` variants keep a bounded memo, because the same dates,
amounts and authority names recur across a million records and the check's hot path meets them
over and over.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from credcore.clock import CST

# NFKC folds （）［］ into ()[], so after it only three pairs are left to unify.
_BRACKETS = str.maketrans({"(": "〔", ")": "〕", "[": "〔", "]": "〕", "【": "〔", "】": "〕"})

_OTHER_BRACKET = re.compile(r"[()\[\]【】]").search
_DATE_SEPARATED = re.compile(r"^(\d{4})([-/.])(\d{1,2})\2(\d{1,2})$")
_DATE_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATE_CHINESE = re.compile(r"^(\d{4}) ?年 ?(\d{1,2}) ?月 ?(\d{1,2}) ?日$")
_AMOUNT = re.compile(r"^\+?(\d+(?:\.\d+)?)(万元|元)?$")
_TEN_THOUSAND = Decimal(10000)


class ValueProblem(ValueError):
    """A value that cannot be normalized; the message says why, in one phrase."""


def as_text(value: Any) -> str:
    """The string form of a scalar JSON value (numbers as written, booleans in JSON spelling)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise ValueProblem("must be a string, a number or null")


def norm_text(value: Any) -> str:
    """NFKC, outer whitespace trimmed, inner whitespace runs collapsed to one space."""
    text = as_text(value)
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())


def norm_code(value: Any) -> str:
    """A code (USCC): NFKC, no whitespace at all, upper case."""
    text = as_text(value)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return "".join(text.split()).upper()


def norm_decision_number(value: Any) -> str:
    """A decision number: text normalization, then every bracket pair written 〔〕."""
    text = value if type(value) is str else as_text(value)
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.split())
    # Most numbers already use 〔〕: a search is much cheaper than a translate.
    return text.translate(_BRACKETS) if _OTHER_BRACKET(text) else text


def parse_date(value: Any) -> dt.date:
    """A calendar date from any of the five accepted spellings; ValueProblem otherwise."""
    text = norm_text(value)
    match = _DATE_SEPARATED.match(text)
    if match:
        year, month, day = match.group(1), match.group(3), match.group(4)
    else:
        match = _DATE_COMPACT.match(text) or _DATE_CHINESE.match(text)
        if not match:
            raise ValueProblem(f"{text!r} is not a date (YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, "
                               "YYYYMMDD or YYYY年M月D日)")
        year, month, day = match.groups()
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        raise ValueProblem(f"{text!r} is not a real date") from None


def parse_amount(value: Any) -> Decimal:
    """An amount in units of 10,000 CNY; strings ending in 元 are converted from yuan."""
    if isinstance(value, bool):
        raise ValueProblem("an amount must be a number or a string, not a boolean")
    if isinstance(value, int | Decimal):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(repr(value))  # the decimal the JSON text had, not the binary float
    else:
        text = norm_text(value).replace(",", "").replace(" ", "")
        match = _AMOUNT.match(text)
        if not match:
            raise ValueProblem(f"{text!r} is not an amount (a number, optionally ending in "
                               "元 or 万元)")
        try:
            amount = Decimal(match.group(1))
        except InvalidOperation:  # pragma: no cover - the pattern only lets decimals through
            raise ValueProblem(f"{text!r} is not an amount") from None
        if match.group(2) == "元":
            amount = amount / _TEN_THOUSAND
    if not amount.is_finite() or amount < 0:
        raise ValueProblem(f"{value!r} is not a non-negative amount")
    return amount


def amount_text(amount: Decimal) -> str:
    """The canonical spelling of an amount: no exponent, no trailing zeros."""
    text = format(amount.normalize(), "f")
    return text


def parse_instant(value: Any) -> dt.datetime:
    """An RFC 3339 time; a date alone (any accepted spelling) means 00:00 China Standard Time."""
    text = norm_text(value)
    try:
        return dt.datetime.combine(parse_date(text), dt.time(), CST)
    except ValueProblem:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueProblem(f"{text!r} is not an RFC 3339 time") from None
    if when.tzinfo is None:
        raise ValueProblem(f"{text!r} has no time zone offset")
    return when


class BoundedMemo:
    """A dict memo that forgets everything when full: cheap, and enough for values that recur."""

    __slots__ = ("_data", "_limit")

    def __init__(self, limit: int = 200_000) -> None:
        self._data: dict[Any, Any] = {}
        self._limit = limit

    def get(self, key: Any) -> Any:
        return self._data.get(key)

    def put(self, key: Any, value: Any) -> None:
        if len(self._data) >= self._limit:
            self._data.clear()
        self._data[key] = value


_date_memo = BoundedMemo()


def date_ordinal_cached(value: Any) -> int:
    """`parse_date(value).toordinal()`, memoized for string values; raises ValueProblem."""
    if isinstance(value, str):
        found = _date_memo.get(value)
        if found is not None:
            if isinstance(found, ValueProblem):
                raise found
            return int(found)
        try:
            ordinal = parse_date(value).toordinal()
        except ValueProblem as problem:
            _date_memo.put(value, problem)
            raise
        _date_memo.put(value, ordinal)
        return ordinal
    return parse_date(value).toordinal()


_amount_memo = BoundedMemo(50_000)


def amount_cached(value: Any) -> Decimal:
    """`parse_amount(value)`, memoized for strings and floats (fines recur); ValueProblem."""
    if type(value) is str or type(value) is float:
        found = _amount_memo.get(value)
        if found is not None:
            if isinstance(found, ValueProblem):
                raise found
            return found  # type: ignore[no-any-return]
        try:
            amount = parse_amount(value)
        except ValueProblem as problem:
            _amount_memo.put(value, problem)
            raise
        _amount_memo.put(value, amount)
        return amount
    return parse_amount(value)
