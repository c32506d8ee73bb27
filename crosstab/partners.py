"""Registering a partner region (`POST /admin/partners`, `credgate crosstab partner add`): pure.

The registration body is CONTRACTS.md section 2: `{"region", "name", "jwks", "record_types"}`,
plus an optional `"domestic": true` (absent means not domestic: deny by default). Every member
is checked before anything is created, and an error names the member.

Re-registering a region is how a partner's key rotation reaches us (`merge_keys`): a key still
in the new JWKS keeps its window; a key dropped from it is retired at that moment (records the
partner signed with it before then still verify, so a stream that straddles the rotation goes
through; records dated later are `unknown_key`); a new key has no window. A kid already
registered for different key material is refused: a kid must name one key for good, or a
record could verify under a key it was not signed with.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from credcore.errors import InvalidParameter
from crosstab.records import RECORD_TYPES
from crosstab.trust import Partner, PartnerKey, keys_from_jwks

_REGION = re.compile(r"^[1-9]\d{5}$")
_MEMBERS = frozenset({"region", "name", "jwks", "record_types", "domestic"})
MAX_KEYS = 16  # per JWKS: a partner publishes its current key and a few retired ones


@dataclass(frozen=True)
class Registration:
    region: str
    name: str
    keys: tuple[PartnerKey, ...]
    record_types: frozenset[str]
    domestic: bool


def check_region(value: object, name: str = "region") -> str:
    if not isinstance(value, str) or not _REGION.match(value):
        raise InvalidParameter(name, f"'{name}' must be a six-digit GB/T 2260 division code such as \"310000\".")
    return value


def parse_registration(body: Any, our_region: str) -> Registration:
    """Validate a registration body; raise InvalidParameter naming the first bad member."""
    if not isinstance(body, Mapping):
        raise InvalidParameter("body", 'A partner registration is {"region", "name", "jwks", "record_types"}.')
    unknown = sorted(set(body) - _MEMBERS)
    if unknown:
        raise InvalidParameter(unknown[0], f"Unknown member '{unknown[0]}' in the partner registration.")
    region = check_region(body.get("region"))
    if region == our_region:
        raise InvalidParameter("region", f"Region {region} is this gateway's own region.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
        raise InvalidParameter("name", "'name' must be a non-empty string of at most 200 characters.")
    types = body.get("record_types")
    if (
        not isinstance(types, list)
        or not types
        or not all(isinstance(x, str) for x in types)
        or not set(types) <= set(RECORD_TYPES)
    ):
        raise InvalidParameter("record_types", f"'record_types' must be a non-empty list of {', '.join(RECORD_TYPES)}.")
    domestic = body.get("domestic", False)
    if not isinstance(domestic, bool):
        raise InvalidParameter("domestic", "'domestic' must be true or false.")
    return Registration(region, name.strip(), parse_jwks(body.get("jwks")), frozenset(types), domestic)


def parse_jwks(jwks: Any) -> tuple[PartnerKey, ...]:
    """A partner's public JWK Set: Ed25519 keys, each with a distinct kid, no private parts."""
    if not isinstance(jwks, Mapping):
        raise InvalidParameter("jwks", '\'jwks\' must be a JWK Set {"keys": [...]}.')
    raw = jwks.get("keys")
    if isinstance(raw, list) and len(raw) > MAX_KEYS:
        raise InvalidParameter("jwks", f"'jwks' holds at most {MAX_KEYS} keys.")
    try:
        keys = keys_from_jwks(jwks)
    except (ValueError, TypeError) as exc:
        raise InvalidParameter("jwks", f"'jwks' is not usable: {exc}.") from exc
    kids = [key.kid for key in keys]
    if len(set(kids)) != len(kids):
        raise InvalidParameter("jwks", "'jwks' has two keys with the same kid.")
    return tuple(PartnerKey(k.kid, _public_members(k.jwk)) for k in keys)


def _public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what identifies and binds the key; drop anything else a JWKS may carry."""
    return {k: jwk[k] for k in ("kty", "crv", "x", "kid", "use", "alg") if k in jwk}


def merge_keys(
    old: Iterable[PartnerKey], new: Iterable[PartnerKey], now: dt.datetime
) -> tuple[PartnerKey, ...]:
    """The key list after a re-registration at `now` (see the module docstring)."""
    before = {key.kid: key for key in old}
    after = {key.kid: key for key in new}
    merged: list[PartnerKey] = []
    for kid, key in after.items():
        prior = before.get(kid)
        if prior is None:
            merged.append(PartnerKey(kid, key.jwk))
        elif prior.jwk.get("x") != key.jwk.get("x"):
            raise InvalidParameter("jwks", f"Key id {kid!r} is already registered for another key.")
        else:
            merged.append(prior)
    for kid, prior in before.items():
        if kid in after:
            continue
        end = now if prior.valid_until is None else min(prior.valid_until, now)
        if prior.valid_from is not None and end <= prior.valid_from:
            continue  # never valid: nothing signed with it can verify, drop it
        merged.append(PartnerKey(kid, prior.jwk, valid_from=prior.valid_from, valid_until=end))
    return tuple(sorted(merged, key=lambda k: k.kid))


def build_partner(reg: Registration, existing: Partner | None, now: dt.datetime) -> Partner:
    """The partner to store for a registration (a re-registration keeps its endpoints)."""
    keys = merge_keys(existing.keys if existing else (), reg.keys, now)
    return Partner(
        region=reg.region,
        name=reg.name,
        keys=keys,
        record_types=reg.record_types,
        outbox_url=existing.outbox_url if existing else None,
        inbox_url=existing.inbox_url if existing else None,
        domestic=reg.domestic,
    )
