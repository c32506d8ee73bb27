"""The synthetic dataset: deterministic, valid codes, every contract field, realistic lifecycle."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from credcore.canonical import digest_json
from credcore.codes import has_valid_org_code, is_resident_id, is_valid_uscc
from credstore.generator import Dataset, generate
from credstore.records import add_months

REFERENCE = date(2026, 11, 1)  # the small dataset's reference date (conftest)
Shown = Callable[[dict[str, Any], date], bool]

DIGEST_SCRIPT = (
    "import json; from datetime import date; from credcore.canonical import digest_json;"
    "from credstore.generator import generate;"
    "d = generate(7, 50, 300, date(2026, 11, 1));"
    "print(digest_json({'e': list(d.entities), 'r': list(d.records), 's': d.sample_uscc()}))"
)


def _digest(dataset: Dataset) -> str:
    return digest_json(
        {"e": list(dataset.entities), "r": list(dataset.records), "s": dataset.sample_uscc()}
    )


def test_same_seed_gives_the_same_dataset(small: Dataset, small_args: dict[str, Any]) -> None:
    """Generating twice with the same arguments gives equal entities, records and samples."""
    again = generate(**small_args)
    assert again == small
    assert _digest(again) == _digest(small)


def test_different_seed_gives_a_different_dataset(small: Dataset) -> None:
    """Another seed changes the entities and the records."""
    other = generate(seed=8, entities=50, records=300, reference_date=REFERENCE)
    assert {e["uscc"] for e in other.entities}.isdisjoint({e["uscc"] for e in small.entities})
    assert other.records != small.records


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_dataset_does_not_depend_on_hash_randomization(small: Dataset, hash_seed: str) -> None:
    """Another interpreter with another PYTHONHASHSEED produces the same bytes."""
    result = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed}, cwd=Path(__file__).parents[2],
    )
    assert result.stdout.strip() == _digest(small)


def test_impossible_sizes_are_refused() -> None:
    """Fewer than 10 entities or no records cannot satisfy sample_uscc() and are refused."""
    with pytest.raises(ValueError, match="entities"):
        generate(entities=9, records=10)
    with pytest.raises(ValueError, match="records"):
        generate(entities=10, records=0)


def test_entity_codes_pass_both_checks(small: Dataset) -> None:
    """Every entity's USCC passes GB 32100 and its inner GB 11714 check, and is unique."""
    codes = [e["uscc"] for e in small.entities]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert is_valid_uscc(code) and has_valid_org_code(code), code
        assert code[0] in "95" and code[1] in "123"


def test_authority_codes_are_valid_government_codes(small: Dataset) -> None:
    """Every authority_uscc is a valid code of a government body (starts 11)."""
    for record in small.records:
        code = record["authority_uscc"]
        assert code.startswith("11") and is_valid_uscc(code) and has_valid_org_code(code)


def test_representative_ids_are_valid_and_match_the_region(small: Dataset) -> None:
    """Every legal representative has a valid GB 11643 number born in the entity's province."""
    for entity in small.entities:
        number = entity["legal_representative_id_number"]
        assert is_resident_id(number), number
        assert number[:2] == entity["region"][:2] == entity["uscc"][2:4]


def test_every_record_has_every_contract_field(
    small: Dataset, contract_fields: Callable[[str], set[str]]
) -> None:
    """Each record has exactly the section 5 fields of its kind plus the representative's."""
    entities = {e["uscc"]: e for e in small.entities}
    for record in small.records:
        assert set(record) == contract_fields(record["kind"]), record["record_id"]
        owner = entities[record["uscc"]]
        assert record["subject_name"] == owner["name"]
        assert record["legal_representative_id_number"] == owner["legal_representative_id_number"]


def test_record_ids_and_match_keys_are_unique(small: Dataset) -> None:
    """record_id and the consistency key (kind, uscc, decision_number) identify one record."""
    ids = [r["record_id"] for r in small.records]
    keys = {(r["kind"], r["uscc"], r["decision_number"]) for r in small.records}
    assert len(set(ids)) == len(ids) == len(keys)
    prefixes = {"penalty": "CF-", "licence": "XK-", "serious_untrustworthy": "SX-"}
    assert all(r["record_id"].startswith(prefixes[r["kind"]]) for r in small.records)
    assert all("〔" in r["decision_number"] for r in small.records)


def test_dates_are_iso_and_before_the_reference_date(small: Dataset) -> None:
    """Dates are YYYY-MM-DD; decisions and publication come no later than the reference date."""
    for record in small.records:
        decided = date.fromisoformat(record["decision_date"])
        start = date.fromisoformat(record["disclosure_start"])
        assert decided <= start <= REFERENCE
        assert record["decision_date"] == decided.isoformat()


def test_disclosure_periods_follow_severity(small: Dataset) -> None:
    """Minor ≤ 3 months, ordinary 3-12 months, serious 1-3 years; licences have no end."""
    bounds = {"minor": (0, 3), "ordinary": (3, 12), "serious": (12, 36)}
    for record in small.records:
        end = record["disclosure_end"]
        if record["kind"] == "licence":
            assert end is None
        if record["kind"] != "penalty":
            continue
        decided = date.fromisoformat(record["decision_date"])
        low, high = bounds[record["severity"]]
        assert add_months(decided, low) - timedelta(days=1) <= date.fromisoformat(end)
        assert date.fromisoformat(end) < add_months(decided, high)


def test_penalty_values_are_well_typed(small: Dataset) -> None:
    """fine_amount is a JSON number in 10,000 CNY and a licence category is 01 to 06."""
    for record in small.records:
        if record["kind"] == "penalty":
            assert type(record["fine_amount"]) is float and record["fine_amount"] >= 0
            assert ("罚款" in record["penalty_category"]) == (record["fine_amount"] > 0)
        if record["kind"] == "licence":
            assert record["licence_category"] in {"01", "02", "03", "04", "05", "06"}


def test_lifecycle_statuses_and_removal_times(small: Dataset) -> None:
    """All three statuses occur; removed_at is an RFC 3339 time before the reference date."""
    counts = Counter(r["status"] for r in small.records)
    assert set(counts) == {"disclosed", "repaired", "withdrawn"}
    for record in small.records:
        if record["status"] == "disclosed":
            assert record["removed_at"] is None
            continue
        removed = datetime.fromisoformat(record["removed_at"])
        assert removed.utcoffset() == timedelta(hours=8)
        assert date.fromisoformat(record["disclosure_start"]) <= removed.date() <= REFERENCE
    expired = [r for r in small.records if (r["disclosure_end"] or "9999") < REFERENCE.isoformat()]
    assert expired, "some disclosure periods should already be over"


def test_first_sample_has_a_lasting_disclosed_penalty(small: Dataset, shown: Shown) -> None:
    """sample_uscc() lists ≥ 10 entities; the first has a penalty shown now and in a year."""
    samples = small.sample_uscc()
    assert len(samples) >= 10 and len(set(samples)) == len(samples)
    assert set(samples) <= {e["uscc"] for e in small.entities}
    first = [r for r in small.records if r["uscc"] == samples[0] and r["kind"] == "penalty"]
    later = REFERENCE + timedelta(days=365)
    assert any(shown(r, REFERENCE) and shown(r, later) for r in first)


def test_default_dataset_has_the_promised_shape() -> None:
    """The default dataset has 2000 entities, 10000 records and roughly the promised mix."""
    dataset = generate()
    assert (len(dataset.entities), len(dataset.records)) == (2000, 10000)
    kinds = Counter(r["kind"] for r in dataset.records)
    statuses = Counter(r["status"] for r in dataset.records)
    assert 5500 < kinds["penalty"] < 6500 and 2500 < kinds["licence"] < 3500
    assert 8000 < statuses["disclosed"] < 9000 and 700 < statuses["repaired"] < 1300
    assert 300 < statuses["withdrawn"] < 700
