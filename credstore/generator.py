"""The deterministic synthetic dataset: entities and their disclosure records.

`generate` is pure: the same arguments give the same `Dataset`, byte for byte, on any machine
(one `random.Random(seed)`, no wall clock, no hash-order dependence). "Now" for the data is the
`reference_date`: every decision and removal happens before it, some disclosure periods are
already over by it, and the first `sample_uscc()` code has a penalty disclosed from before it
until three years after its decision, so it stays visible to a store run in real time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from credstore import identities
from credstore.records import Record, authority, finalize, licence, list_entry, penalty
from credstore.vocab import DIVISIONS, Division

# Bump when the generator's output changes, so stores built by an older one are rebuilt.
GENERATOR_VERSION = 1
DEFAULT_SEED = 20250301
DEFAULT_ENTITIES = 2000
DEFAULT_RECORDS = 10000
DEFAULT_REFERENCE_DATE = date(2026, 11, 1)
MIN_ENTITIES = 10  # sample_uscc() promises at least 10 codes

Entity = dict[str, Any]

ENTITY_FIELDS = (
    "uscc", "name", "entity_type", "legal_representative", "legal_representative_id_number",
    "region", "address", "registered_capital", "established_date", "status",
    "registration_authority",
)
# (position 1, position 2, entity_type, weight): mostly enterprises under market regulation.
_ENTITY_TYPES = (
    ("9", "1", "enterprise", 85),
    ("9", "2", "individual_business", 8),
    ("9", "3", "farmers_cooperative", 4),
    ("5", "2", "social_organization", 3),  # 民办非企业单位, registered by civil affairs
)
_KINDS = ("penalty", "licence", "serious_untrustworthy")
_KIND_WEIGHTS = (60, 30, 10)
_CAPITAL = (10, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class DatasetSpec:
    """The arguments of `generate`: two stores built from equal specs hold equal data."""

    seed: int = DEFAULT_SEED
    entities: int = DEFAULT_ENTITIES
    records: int = DEFAULT_RECORDS
    reference_date: date = DEFAULT_REFERENCE_DATE

    def as_meta(self) -> dict[str, Any]:
        return {
            "generator_version": GENERATOR_VERSION, "seed": self.seed, "entities": self.entities,
            "records": self.records, "reference_date": self.reference_date.isoformat(),
        }

    def validate(self) -> None:
        if self.entities < MIN_ENTITIES:
            raise ValueError(f"entities must be at least {MIN_ENTITIES}, got {self.entities}")
        if self.records < 1:
            raise ValueError(f"records must be at least 1, got {self.records}")


@dataclass(frozen=True)
class Dataset:
    """Entities (in creation order) and records (in feed order: position i has seq i + 1)."""

    spec: DatasetSpec
    entities: tuple[Entity, ...]
    records: tuple[Record, ...]
    samples: tuple[str, ...] = field(default=())

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def reference_date(self) -> date:
        return self.spec.reference_date

    def sample_uscc(self) -> list[str]:
        """At least 10 codes of entities in the store; the first has a disclosed penalty."""
        return list(self.samples)


def generate(
    seed: int = DEFAULT_SEED,
    entities: int = DEFAULT_ENTITIES,
    records: int = DEFAULT_RECORDS,
    reference_date: date = DEFAULT_REFERENCE_DATE,
) -> Dataset:
    """Build the dataset for these arguments; raise ValueError for impossible sizes."""
    spec = DatasetSpec(seed, entities, records, reference_date)
    spec.validate()
    rng = random.Random(seed)
    taken: set[str] = set()
    people = [_entity(rng, reference_date, taken, anchor=i == 0) for i in range(entities)]
    owners = _owners(rng, entities, records)
    anchor, anchor_division = people[0]
    drafts = [penalty(rng, anchor, anchor_division, reference_date, anchor=True)]
    for index in owners[1:]:
        entity, division = people[index]
        kind = rng.choices(_KINDS, weights=_KIND_WEIGHTS)[0]
        build = {"penalty": penalty, "licence": licence, "serious_untrustworthy": list_entry}[kind]
        drafts.append(build(rng, entity, division, reference_date))
    feed = finalize(rng, drafts)
    profiles = tuple(entity for entity, _ in people)
    return Dataset(spec, profiles, tuple(feed), _samples(profiles, feed))


def _owners(rng: random.Random, entities: int, count: int) -> list[int]:
    """Which entity each record belongs to: a heavy tail, as real records cluster on few firms."""
    # Pareto 2.5: the busiest of 2000 entities gets ~50 records, not hundreds, so no single
    # answer dominates a benchmark over the sample codes.
    weights = [rng.paretovariate(2.5) for _ in range(entities)]
    return [0] + rng.choices(range(entities), weights=weights, k=count - 1)


def _entity(
    rng: random.Random, reference: date, taken: set[str], *, anchor: bool
) -> tuple[Entity, Division]:
    """One subject; `taken` holds the codes and names already used, which must stay unique."""
    division = rng.choice(DIVISIONS)
    weights = [t[3] for t in _ENTITY_TYPES]
    # The anchor is an enterprise: the demo's first sample should look like a typical subject.
    first, second, entity_type, _ = _ENTITY_TYPES[0] if anchor else rng.choices(
        _ENTITY_TYPES, weights=weights
    )[0]
    # Born in the region of registration: the province digits of the ID match the code's.
    representative_id = identities.resident_id(rng, division.code)
    established = reference - timedelta(days=rng.randint(400, 30 * 365))
    capital = float(rng.choice(_CAPITAL))
    if entity_type in ("individual_business", "farmers_cooperative"):
        capital = float(rng.randint(1, 50))
    uscc = _fresh(taken, lambda: identities.entity_uscc(rng, first, second, division.code))
    name = _fresh(taken, lambda: identities.company_name(rng, division, entity_type))
    # Market regulation registers under 9; civil affairs registers social organizations.
    registrar = authority(division, "samr")[0] if first == "9" else division.local + "民政局"
    entity: Entity = {
        "uscc": uscc,
        "name": name,
        "entity_type": entity_type,
        "legal_representative": identities.person_name(rng),
        "legal_representative_id_number": representative_id,
        "region": division.code,
        "address": identities.address(rng, division),
        "registered_capital": capital,
        "established_date": established.isoformat(),
        "status": "active" if anchor else rng.choices(
            ("active", "revoked", "deregistered"), weights=(92, 4, 4)
        )[0],
        "registration_authority": registrar,
    }
    return entity, division


def _fresh(taken: set[str], draw: Callable[[], str]) -> str:
    """Draw until the value is new; collisions are rare, so this loops once or twice."""
    value = draw()
    while value in taken:
        value = draw()
    taken.add(value)
    return value


def _samples(entities: tuple[Entity, ...], feed: list[Record]) -> tuple[str, ...]:
    """The anchor first, then entities with records in creation order (typical, not the
    busiest), then entities without, 12 codes in all."""
    owners = {record["uscc"] for record in feed}
    rest = [e["uscc"] for e in entities[1:]]
    ordered = [u for u in rest if u in owners] + [u for u in rest if u not in owners]
    return (entities[0]["uscc"], *ordered[:11])
