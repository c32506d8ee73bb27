"""Every normalization rule of CONTRACTS section 5, and the errors for values it cannot accept."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consistency.normalize import (
    ValueProblem,
    amount_text,
    date_ordinal_cached,
    norm_code,
    norm_decision_number,
    norm_text,
    parse_amount,
    parse_date,
    parse_instant,
)
from credcore.clock import CST


def test_text_is_nfkc() -> None:
    """Full-width letters, digits and punctuation equal their plain forms."""
    assert norm_text("ＡＢＣ１２３，（有限公司）") == "ABC123,(有限公司)"


def test_text_trims_and_collapses_whitespace() -> None:
    """Outer whitespace goes, inner runs (ideographic space and tabs included) become one space."""
    assert norm_text("\u3000 北京  某某\t\u3000公司 \n") == "北京 某某 公司"


def test_text_of_numbers_and_booleans() -> None:
    """Scalars other than strings compare by their JSON spelling."""
    assert norm_text(15) == "15"
    assert norm_text(True) == "true"


def test_text_refuses_structures() -> None:
    """A list or object is not a field value."""
    with pytest.raises(ValueProblem):
        norm_text(["a"])


def test_codes_are_upper_case_without_spaces() -> None:
    """A credit code is compared without case or inner spaces, full-width folded."""
    assert norm_code(" 91110105ma01abcd3x ") == "91110105MA01ABCD3X"
    assert norm_code("９１１１ ０１０５MA01ABCD3X") == "91110105MA01ABCD3X"


@pytest.mark.parametrize("spelling", [
    "京朝市监罚〔2025〕12号", "京朝市监罚[2025]12号", "京朝市监罚［2025］12号",
    "京朝市监罚(2025)12号", "京朝市监罚（2025）12号", "京朝市监罚【2025】12号",
    " 京朝市监罚〔２０２５〕12号 ",
])
def test_decision_number_bracket_pairs_are_equal(spelling: str) -> None:
    """The six bracket pairs of decision numbers are one pair after normalization."""
    assert norm_decision_number(spelling) == "京朝市监罚〔2025〕12号"


@pytest.mark.parametrize("spelling", [
    "2025-03-05", "2025/03/05", "2025.03.05", "20250305", "2025年3月5日", "2025年03月05日",
    "2025-3-5", "2025/3/5", " 2025 年 3 月 5 日 ", "２０２５-03-05", 20250305,
])
def test_date_spellings(spelling: object) -> None:
    """All five contract spellings (and leading zeros or not) give the same date."""
    assert parse_date(spelling) == dt.date(2025, 3, 5)


@pytest.mark.parametrize("spelling", ["2025-02-30", "20250230", "2025年2月30日", "2025/13/01",
                                      "2024.02.30"])
def test_impossible_dates_are_refused(spelling: str) -> None:
    """A date that does not exist is an error, not a guess."""
    with pytest.raises(ValueProblem, match="not a real date"):
        parse_date(spelling)


@pytest.mark.parametrize("spelling", ["2025-03", "05/03/2025", "yesterday", "2025-03-05T00:00",
                                      "2025-03/05"])
def test_other_spellings_are_not_dates(spelling: str) -> None:
    """Anything but the five spellings is refused."""
    with pytest.raises(ValueProblem, match="not a date"):
        parse_date(spelling)


def test_leap_day() -> None:
    """29 February exists in leap years only."""
    assert parse_date("2024年2月29日") == dt.date(2024, 2, 29)
    with pytest.raises(ValueProblem):
        parse_date("2025-02-29")


def test_memoized_dates_raise_every_time() -> None:
    """The memo remembers bad dates too, and still raises for them."""
    for _ in range(2):
        with pytest.raises(ValueProblem):
            date_ordinal_cached("2025-02-30")
    assert date_ordinal_cached("2025年3月5日") == dt.date(2025, 3, 5).toordinal()


@given(st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_every_date_in_every_spelling(day: dt.date) -> None:
    """For any date, its five spellings all parse back to it."""
    y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    for spelling in (f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{y}{m}{d}",
                     f"{y}年{day.month}月{day.day}日"):
        assert parse_date(spelling) == day


@pytest.mark.parametrize(("value", "expected"), [
    (1.5, "1.5"), (2, "2"), ("1.5", "1.5"), ("1.50", "1.5"), ("15000元", "1.5"),
    ("1.5万元", "1.5"), ("15,000元", "1.5"), ("１５０００元", "1.5"), ("  0.35 万元", "0.35"),
    ("123元", "0.0123"), (0, "0"), ("100", "100"), (Decimal("2.0"), "2"),
])
def test_amounts_in_ten_thousand_yuan(value: object, expected: str) -> None:
    """Amounts are decimals in 万元; 元 strings are converted, exactly (no float rounding)."""
    assert amount_text(parse_amount(value)) == expected


def test_float_amounts_keep_their_decimal_spelling() -> None:
    """0.1 from JSON is the decimal 0.1, so 1000元 equals it exactly."""
    assert parse_amount(0.1) == parse_amount("1000元")


@pytest.mark.parametrize("value", ["abc", "-1", -0.5, "1.5美元", True, "1e5", ""])
def test_bad_amounts(value: object) -> None:
    """Text, negative amounts, other currencies and booleans are not amounts."""
    with pytest.raises(ValueProblem):
        parse_amount(value)


def test_instants() -> None:
    """RFC 3339 times keep their offset; a bare date means 00:00 CST."""
    assert parse_instant("2025-09-26T02:00:00Z") == dt.datetime(2025, 9, 26, 10, tzinfo=CST)
    assert parse_instant("2025-09-26") == dt.datetime(2025, 9, 26, tzinfo=CST)
    with pytest.raises(ValueProblem):
        parse_instant("2025-09-26T10:00:00")
    with pytest.raises(ValueProblem):
        parse_instant("soon")
