"""The data sets of CONTRACTS section 3 and the fields each may release.

A licence names fields from this catalogue; anything else the store sends (including fields
it adds later) is stripped. Personal identity numbers are in no data set: they never leave.
"""

from __future__ import annotations

COMMON = (
    "record_id", "kind", "uscc", "subject_name", "decision_number", "authority", "authority_uscc",
    "decision_date", "disclosure_start", "disclosure_end", "status", "removed_at",
)
PENALTY = COMMON + (
    "violation_type", "violation_facts", "legal_basis", "penalty_category", "penalty_content",
    "fine_amount", "severity", "legal_representative",
)
LICENCE = COMMON + (
    "licence_category", "licence_name", "licence_number", "licence_content", "valid_from",
    "valid_until", "legal_representative",
)
LIST_ENTRY = COMMON + ("list_name", "listing_reason", "legal_representative")
ENTITY = (
    "uscc", "name", "entity_type", "region", "legal_representative", "registered_capital",
    "established_date", "registration_authority", "address", "status",
)
RECOGNITION = (
    "jti", "origin_region", "type", "uscc", "subject_name", "scheme", "grade", "mapped_scheme",
    "mapped_grade", "list_name", "decision_number", "authority", "authority_uscc", "valid_from",
    "valid_until", "revoked", "received_at", "status", "origin_name", "revoked_by", "issued_at", "jws",
)

DATASETS: dict[str, frozenset[str]] = {
    "entities": frozenset(ENTITY),
    "penalties": frozenset(PENALTY),
    "licences": frozenset(LICENCE),
    "serious_untrustworthy": frozenset(LIST_ENTRY),
    "disclosures": frozenset(set(PENALTY) | set(LICENCE) | set(LIST_ENTRY)),
    "recognitions": frozenset(RECOGNITION),
}

# Bulk data sets are paged feeds: no single subject, so the region is checked per record.
BULK_DATASETS = frozenset({"serious_untrustworthy", "disclosures"})
