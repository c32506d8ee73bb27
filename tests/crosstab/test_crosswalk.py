"""Crosswalk tables in policies/crosswalk/: exact mappings, never guesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crosstab.crosswalk import Crosswalk, map_grade, packaged_crosswalk
from crosstab.errors import CrosswalkError, UnmappedGrade


@pytest.mark.parametrize("grade", ["A", "B", "M", "C", "D"])
def test_tax_credit_grades_map_to_themselves(grade: str) -> None:
    """The national tax credit grades are the same everywhere, from any region."""
    for issuer in ("310000", "440000", "810000", None):
        mapped = map_grade("tax_credit", grade, issuer)
        assert (mapped.our_scheme, mapped.our_grade) == ("tax_credit", grade)


@pytest.mark.parametrize(
    ("grade", "ours"), [("AAA", "A"), ("AA", "A"), ("A", "B"), ("B", "C"), ("C", "D")]
)
def test_yangtze_delta_scheme_maps_onto_public_credit(grade: str, ours: str) -> None:
    """The example regional scheme maps each of its five grades onto a national class."""
    mapped = map_grade("csj_enterprise_credit", grade, "320000")
    assert mapped.our_scheme == "public_credit"
    assert mapped.our_grade == ours
    assert (mapped.scheme, mapped.grade) == ("csj_enterprise_credit", grade)


@pytest.mark.parametrize(
    ("scheme", "grade", "issuer"),
    [
        ("tax_credit", "E", "310000"),
        ("tax_credit", "a", "310000"),  # case matters: never guessed
        ("tax_credit", "A+", "310000"),
        ("csj_enterprise_credit", "BBB", "310000"),
        ("csj_enterprise_credit", "AAA", "440000"),  # Guangdong is not a party to the scheme
        ("gba_credit", "A", "440000"),
    ],
)
def test_unmapped_grades_are_refused(scheme: str, grade: str, issuer: str) -> None:
    """An unknown scheme, unknown grade or a non-member issuer raises unmapped_grade."""
    with pytest.raises(UnmappedGrade) as info:
        map_grade(scheme, grade, issuer)
    assert info.value.code == "unmapped_grade"


def test_packaged_tables_are_the_shipped_files() -> None:
    """The packaged loader finds every JSON file in policies/crosswalk/."""
    folder = Path(__file__).resolve().parents[2] / "policies" / "crosswalk"
    assert packaged_crosswalk().schemes() == sorted(p.stem for p in folder.glob("*.json"))
    assert {"tax_credit", "csj_enterprise_credit"} <= set(packaged_crosswalk().schemes())


def _write(folder: Path, name: str, body: object) -> None:
    (folder / name).write_text(json.dumps(body), encoding="utf-8")


GOOD = {"scheme": "x_credit", "maps_to": "public_credit", "grades": {"1": "A"}}


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("x_credit.json", {**GOOD, "grades": {}}),
        ("x_credit.json", {**GOOD, "grades": {"1": 1}}),
        ("x_credit.json", {**GOOD, "scheme": "X Credit"}),
        ("x_credit.json", {**GOOD, "issuers": ["31"]}),
        ("x_credit.json", {**GOOD, "maps_to": None}),
        ("other.json", GOOD),
        ("x_credit.json", ["not", "an", "object"]),
    ],
)
def test_malformed_tables_fail_at_load(tmp_path: Path, name: str, body: object) -> None:
    """A malformed table stops loading with an error naming the file."""
    _write(tmp_path, name, body)
    with pytest.raises(CrosswalkError, match=name):
        Crosswalk.from_directory(tmp_path)


def test_unreadable_table_fails_at_load(tmp_path: Path) -> None:
    """A file that is not JSON is a CrosswalkError, not a crash at run time."""
    (tmp_path / "x_credit.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CrosswalkError):
        Crosswalk.from_directory(tmp_path)


def test_custom_directory_maps(tmp_path: Path) -> None:
    """Tables can come from a deployment's own folder."""
    _write(tmp_path, "x_credit.json", {**GOOD, "issuers": ["440000"]})
    crosswalk = Crosswalk.from_directory(tmp_path)
    assert crosswalk.map_grade("x_credit", "1", "440000").our_grade == "A"
    with pytest.raises(UnmappedGrade):
        crosswalk.map_grade("tax_credit", "A", "440000")
