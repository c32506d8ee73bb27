"""The trust registry: which partner regions we exchange with, and with which keys.

Pure data. A partner is trusted for exactly what it is registered for: its own region code as
`iss`, its listed record types, and records signed by one of its keys that was valid at the
record's `iat`. Key validity windows make rotation safe in the middle of a stream: the old key
stays valid for records issued until T (`valid_until`, exclusive), the new key from T on
(`valid_from`, inclusive), so records signed before a rotation still verify after it.

Being domestic is deny-by-default: a partner receives domestic-only records only when it is
registered as domestic *and* its region is in the configured domestic set (`Partner.domestic`
alone, or a region code alone, is not enough), so one wrong setting cannot send records abroad.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import OKPKey

from crosstab import _jose
from crosstab.errors import UnknownPartner
from crosstab.records import RECORD_TYPES

_REGION = re.compile(r"^[1-9]\d{5}$")
MAX_KID = 128  # crosstab_partner_keys.kid


def _utc(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


@dataclass(frozen=True)
class PartnerKey:
    """One public signing key of a partner, valid for records with valid_from <= iat < until."""

    kid: str
    jwk: dict[str, Any]
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.kid:
            raise ValueError("a partner key needs a kid")
        if len(self.kid) > MAX_KID:  # the column's length: PostgreSQL refuses longer, SQLite would not
            raise ValueError(f"a kid has at most {MAX_KID} characters")
        _jose.import_public_key(self.jwk)  # refuses private or non-Ed25519 JWKs early
        _utc(self.valid_from, "valid_from")
        _utc(self.valid_until, "valid_until")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError(f"key {self.kid}: valid_until must be after valid_from")

    def valid_at(self, iat: int) -> bool:
        when = dt.datetime.fromtimestamp(iat, dt.UTC)
        if self.valid_from is not None and when < self.valid_from:
            return False
        return self.valid_until is None or when < self.valid_until

    def public_key(self) -> OKPKey:
        return _jose.import_public_key(self.jwk)


@dataclass(frozen=True)
class Partner:
    """A partner region: what it may send us, where its outbox is, whether it is domestic."""

    region: str
    name: str
    keys: tuple[PartnerKey, ...]
    record_types: frozenset[str]
    outbox_url: str | None = None
    inbox_url: str | None = None
    domestic: bool = False

    def __post_init__(self) -> None:
        if not _REGION.match(self.region):
            raise ValueError("a partner's region is a six-digit GB/T 2260 division code")
        unknown = set(self.record_types) - set(RECORD_TYPES)
        if unknown:
            raise ValueError(f"unknown record types: {', '.join(sorted(unknown))}")
        kids = [k.kid for k in self.keys]
        if len(kids) != len(set(kids)):
            raise ValueError("a partner's key ids must be distinct")

    def allows(self, record_type: str) -> bool:
        return record_type in self.record_types

    def key_for(self, kid: str, iat: int) -> PartnerKey | None:
        """The key with this kid if it was valid at iat; None otherwise (deny by default)."""
        for key in self.keys:
            if key.kid == kid:
                return key if key.valid_at(iat) else None
        return None

    def has_kid(self, kid: str) -> bool:
        return any(key.kid == kid for key in self.keys)

    def with_keys(self, keys: Iterable[PartnerKey]) -> Partner:
        """A copy with another key list (rotation: add the new key, bound the old one)."""
        return Partner(
            region=self.region,
            name=self.name,
            keys=tuple(keys),
            record_types=self.record_types,
            outbox_url=self.outbox_url,
            inbox_url=self.inbox_url,
            domestic=self.domestic,
        )


def keys_from_jwks(
    jwks: Mapping[str, Any],
    validity: Mapping[str, tuple[dt.datetime | None, dt.datetime | None]] | None = None,
) -> tuple[PartnerKey, ...]:
    """Partner keys from a `{"keys": [...]}` document; `validity` bounds keys by kid."""
    raw = jwks.get("keys")
    if not isinstance(raw, list) or not raw:
        raise ValueError('a JWKS is {"keys": [...]} with at least one key')
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("kid"), str):
            raise ValueError("every key in the JWKS needs a kid")
        start, end = (validity or {}).get(item["kid"], (None, None))
        out.append(PartnerKey(kid=item["kid"], jwk=dict(item), valid_from=start, valid_until=end))
    return tuple(out)


@dataclass(frozen=True)
class DomesticPolicy:
    """The configured set of domestic region codes; empty means no partner is domestic."""

    regions: frozenset[str] = field(default_factory=frozenset)

    def is_domestic(self, partner: Partner) -> bool:
        return partner.domestic and partner.region in self.regions


class TrustRegistry:
    """Partners by region code; a lookup of an unregistered region raises UnknownPartner."""

    def __init__(self, partners: Sequence[Partner] = ()) -> None:
        self._partners: dict[str, Partner] = {}
        for partner in partners:
            self.add(partner)

    def add(self, partner: Partner) -> None:
        self._partners[partner.region] = partner

    def remove(self, region: str) -> None:
        self._partners.pop(region, None)

    def get(self, region: str) -> Partner:
        partner = self._partners.get(region)
        if partner is None:
            raise UnknownPartner(f"Region {region} is not a registered partner.")
        return partner

    def __contains__(self, region: object) -> bool:
        return region in self._partners

    def __iter__(self) -> Iterator[Partner]:
        return iter(sorted(self._partners.values(), key=lambda p: p.region))

    def __len__(self) -> int:
        return len(self._partners)
