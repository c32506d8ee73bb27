"""Golden decision tables in the style of pycasbin's examples/: model, policy and expected decisions.

The model is the real policies/model.conf; the policy and the table live in tests/policies/golden/.
Plain Casbin (a file adapter over the whole policy) and the DecisionIndex must both give the
expected answer and name the same matching rule (enforce_ex).
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import casbin
import pytest

from policies.decision import DecisionIndex
from policies.licence import region_matches

GOLDEN = Path(__file__).parent / "golden"
MODEL = str(resources.files("policies").joinpath("model.conf"))


def _policy_rows() -> list[list[str]]:
    with open(GOLDEN / "scope_policy.csv", encoding="utf-8") as handle:
        return [[cell.strip() for cell in row[1:]] for row in csv.reader(handle) if row and row[0].strip() == "p"]


def _table() -> list[tuple[list[str], bool, tuple[str, ...] | None]]:
    cases = []
    with open(GOLDEN / "scope_decisions.csv", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#"):
                continue
            cells = [cell.strip() for cell in row]
            request, expected, rule = cells[:4], cells[4], cells[5]
            cases.append((request, expected == "allow", None if rule == "-" else tuple(rule.split())))
    return cases


CASES = _table()


@pytest.fixture(scope="module")
def plain() -> casbin.Enforcer:
    enforcer = casbin.Enforcer(MODEL, str(GOLDEN / "scope_policy.csv"))
    enforcer.add_function("regionMatch", region_matches)
    return enforcer


@pytest.fixture(scope="module")
def index() -> DecisionIndex:
    return DecisionIndex(_policy_rows())


@pytest.mark.parametrize(("request_", "allowed", "rule"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_plain_casbin_matches_the_table(plain: casbin.Enforcer, request_: list[str], allowed: bool,
                                        rule: tuple[str, ...] | None) -> None:
    """pycasbin over model.conf and the golden policy answers as the table says, naming the rule."""
    ok, explain = plain.enforce_ex(*request_)
    assert ok is allowed
    assert (tuple(explain) if ok else None) == rule


@pytest.mark.parametrize(("request_", "allowed", "rule"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_index_matches_the_table(index: DecisionIndex, request_: list[str], allowed: bool,
                                 rule: tuple[str, ...] | None) -> None:
    """The DecisionIndex answers as the table says, cold and then from its cache."""
    for _ in range(2):
        decision = index.decide(*request_)
        assert decision.allowed is allowed
        assert decision.rule == rule
        if rule is not None:
            assert decision.licence_id == rule[4]


def test_denials_say_why(index: DecisionIndex) -> None:
    """A denial names what is outside the licence: data set, purpose or region."""
    assert "data set 'licences'" in index.decide("op-sh", "licences", "credit_check", "310115").reason
    assert "purpose 'marketing'" in index.decide("op-sh", "penalties", "marketing", "310115").reason
    assert "region 110105" in index.decide("op-sh", "penalties", "credit_check", "110105").reason
    assert "no licence" in index.decide("nobody", "penalties", "credit_check", "310115").reason


def test_empty_index_denies_everything() -> None:
    """With no policy rows at all, nothing is allowed (deny by default)."""
    empty = DecisionIndex([])
    assert not empty.decide("op-all", "penalties", "credit_check", "110105").allowed
    assert empty.row_count == 0
