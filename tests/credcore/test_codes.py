"""Unified Social Credit Codes and resident ID numbers, against the published examples."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credcore.codes import (
    USCC_ALPHABET,
    find_resident_ids,
    has_valid_org_code,
    is_resident_id,
    is_valid_uscc,
    mask_resident_ids,
    resident_id_check_char,
    uscc_check_char,
    validate_uscc,
)
from credcore.errors import InvalidUSCC

VECTORS = json.loads(
    (Path(__file__).resolve().parents[3] / "shared" / "data" / "uscc-codes.json").read_text()
)


@pytest.mark.parametrize("item", VECTORS["valid"], ids=lambda i: i["code"])
def test_published_codes_are_valid(item: dict) -> None:
    """Every real company code in the shared vectors passes both checks."""
    assert is_valid_uscc(item["code"])
    assert has_valid_org_code(item["code"])


@pytest.mark.parametrize("item", VECTORS["invalid"], ids=lambda i: i["why"])
def test_published_bad_codes_are_refused(item: dict) -> None:
    """Each malformed code in the shared vectors raises InvalidUSCC with a reason."""
    with pytest.raises(InvalidUSCC):
        validate_uscc(item["code"])


@given(st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17))
def test_any_body_with_its_check_character_is_valid(body: str) -> None:
    """The check character computed for any 17-character body makes a valid code."""
    assert is_valid_uscc(body + uscc_check_char(body))


@given(st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17), st.sampled_from(USCC_ALPHABET))
def test_a_changed_check_character_is_refused(body: str, other: str) -> None:
    """Any other 18th character is refused."""
    if other != uscc_check_char(body):
        assert not is_valid_uscc(body + other)


def test_resident_id_needs_province_date_and_check() -> None:
    """An ID number needs a real province, a real birth date and the MOD 11-2 check."""
    good = "11010519491231002X"
    assert is_resident_id(good)
    assert not is_resident_id("99010519491231002X")  # no province 99
    body = "110105194902300" + "12"  # 30 February
    assert not is_resident_id(body + resident_id_check_char(body))
    assert not is_resident_id("110105194912310021")  # wrong check character


def test_all_digit_credit_code_is_not_masked() -> None:
    """A credit code that passes the ID check character alone is never mistaken for an ID."""
    code = "914403001922038216"
    assert is_valid_uscc(code)
    assert find_resident_ids(f"code {code}") == []
    assert mask_resident_ids(code) == code


def test_masking_replaces_ids_inside_text() -> None:
    """An ID number inside a sentence is masked; the rest of the sentence is kept."""
    assert mask_resident_ids("法定代表人身份证11010519491231002X。") == "法定代表人身份证" + "*" * 18 + "。"
