"""Shared fixtures: one small dataset, the contract's field sets, and store clients.

With --import-mode=importlib a test module cannot import this file, so what tests share is
offered as fixtures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from credstore.app import make_app
from credstore.generator import Dataset, generate

SMALL = {"seed": 7, "entities": 50, "records": 300}
REFERENCE = date(2026, 11, 1)

# CONTRACTS section 5, written out here rather than imported, so the tests check the code
# against the contract and not against itself.
COMMON = {
    "record_id", "kind", "uscc", "subject_name", "decision_number", "authority",
    "authority_uscc", "decision_date", "disclosure_start", "disclosure_end", "status",
    "removed_at",
}
BY_KIND = {
    "penalty": {
        "violation_type", "violation_facts", "legal_basis", "penalty_category",
        "penalty_content", "fine_amount", "severity",
    },
    "licence": {
        "licence_category", "licence_name", "licence_number", "licence_content", "valid_from",
        "valid_until",
    },
    "serious_untrustworthy": {"list_name", "listing_reason"},
}
REPRESENTATIVE = {"legal_representative", "legal_representative_id_number"}


@pytest.fixture(scope="session")
def small() -> Dataset:
    """50 entities and 300 records as of REFERENCE (seed 7)."""
    return generate(**SMALL, reference_date=REFERENCE)


@pytest.fixture(scope="session")
def small_args() -> dict[str, Any]:
    """The arguments that generate `small`."""
    return {**SMALL, "reference_date": REFERENCE}


@pytest.fixture(scope="session")
def contract_fields() -> Callable[[str], set[str]]:
    """The fields a store record of a kind carries: section 5's plus the representative's."""
    return lambda kind: COMMON | BY_KIND[kind] | REPRESENTATIVE


@pytest.fixture(scope="session")
def shown() -> Callable[[dict[str, Any], date], bool]:
    return _shown_on


def _shown_on(record: dict[str, Any], day: date) -> bool:
    """The contract's "currently shown", restated independently of credstore.app."""
    today = day.isoformat()
    end = record["disclosure_end"]
    return (
        record["status"] == "disclosed"
        and record["disclosure_start"] <= today
        and (end is None or end >= today)
    )


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def store_client(aiohttp_client: Any, small: Dataset) -> ClientFactory:
    """Start the store app over `source` (default: the small dataset) as of `day`."""

    async def start(source: Any = None, day: date = REFERENCE) -> TestClient[Any, Any]:
        app = make_app(small if source is None else source, today=lambda: day)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return start
