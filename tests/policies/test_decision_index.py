"""The DecisionIndex: per-operator partitions, lazy enforcers, and replacement on a policy change."""

from __future__ import annotations

from policies.decision import DecisionIndex

ROWS = [
    ["a", "penalties", "credit_check", "31", "LA"],
    ["b", "penalties", "credit_check", "44", "LB"],
    ["b", "entities", "credit_check", "44", "LB"],
]


def test_enforcers_are_built_on_first_use_only() -> None:
    """Loading rows builds no Casbin enforcer; the first decision for an operator builds its own."""
    index = DecisionIndex(ROWS)
    assert all(part.enforcer is None for part in index._parts.values())
    index.decide("a", "penalties", "credit_check", "310115")
    assert index._parts["a"].enforcer is not None
    assert index._parts["b"].enforcer is None


def test_replace_changes_only_the_named_operators() -> None:
    """A replacement keeps unchanged operators' partitions and applies the new rows of the others."""
    index = DecisionIndex(ROWS, version=1)
    assert index.decide("a", "penalties", "credit_check", "310115").allowed
    assert index.decide("b", "penalties", "credit_check", "440300").allowed
    kept = index._parts["b"]
    new = index.replace(2, {"a": [["a", "penalties", "credit_check", "11", "LA2"]]})
    assert new.version == 2
    assert new._parts["b"] is kept  # its enforcer and cached decisions are reused
    assert not new.decide("a", "penalties", "credit_check", "310115").allowed
    assert new.decide("a", "penalties", "credit_check", "110105").licence_id == "LA2"
    assert new.row_count == 3
    # The old snapshot is untouched (requests already in flight keep a consistent view).
    assert index.decide("a", "penalties", "credit_check", "310115").allowed


def test_replace_with_no_rows_removes_the_operator() -> None:
    """An operator whose licences all ended has no partition and is denied."""
    index = DecisionIndex(ROWS).replace(2, {"b": []})
    assert index.operator_count == 1 and index.row_count == 1
    assert not index.decide("b", "penalties", "credit_check", "440300").allowed


def test_identical_rows_keep_the_partition() -> None:
    """Replacing an operator's rows with the same rows keeps its partition (and warm cache)."""
    index = DecisionIndex(ROWS)
    part = index._parts["a"]
    assert index.replace(2, {"a": [ROWS[0]]})._parts["a"] is part


def test_cache_is_bounded() -> None:
    """The decision cache never holds more than its size."""
    index = DecisionIndex(ROWS, cache_size=8)
    for n in range(50):
        index.decide("a", "penalties", "credit_check", f"31{n:04d}")
    assert len(index._cache) == 8
    assert index.decide("a", "penalties", "credit_check", "310001").allowed


def test_stale_cache_entries_never_answer() -> None:
    """After a change, a decision cached for the operator's old rows is not reused."""
    index = DecisionIndex(ROWS)
    assert index.decide("a", "penalties", "credit_check", "310115").allowed
    revoked = index.replace(2, {"a": [["a", "entities", "credit_check", "31", "LA"]]})
    assert not revoked.decide("a", "penalties", "credit_check", "310115").allowed
