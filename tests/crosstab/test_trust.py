"""The trust registry: key windows, registration checks, deny-by-default domestic policy."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crosstab.errors import UnknownPartner
from crosstab.trust import DomesticPolicy, PartnerKey, TrustRegistry, keys_from_jwks

T = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
AT_T = int(T.timestamp())


def test_key_window_is_inclusive_start_exclusive_end(kit: Any) -> None:
    """A key is valid from valid_from (inclusive) until valid_until (exclusive)."""
    key = PartnerKey("k", kit.keys.public("k"), valid_from=T, valid_until=T + dt.timedelta(days=1))
    assert not key.valid_at(AT_T - 1)
    assert key.valid_at(AT_T)
    assert key.valid_at(AT_T + 86399)
    assert not key.valid_at(AT_T + 86400)


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "OKP", "crv": "Ed448", "x": "AAAA"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        {"kty": "oct", "k": "c2VjcmV0"},
    ],
)
def test_only_ed25519_public_keys_register(jwk: dict[str, Any]) -> None:
    """A partner key must be an Ed25519 OKP key."""
    with pytest.raises(ValueError):
        PartnerKey("k", jwk)


def test_private_keys_never_register(kit: Any) -> None:
    """Registering a JWK with its private part is refused, so secrets stay out of the store."""
    with pytest.raises(ValueError, match="public"):
        PartnerKey("k", dict(kit.keys["k"].as_dict(private=True)))


def test_registration_checks(kit: Any) -> None:
    """Region codes, record types, key ids and windows are checked when a partner is made."""
    with pytest.raises(ValueError):
        kit.partner_of("31")
    with pytest.raises(ValueError):
        kit.partner_of("310000", record_types=frozenset({"rating"}))
    key = PartnerKey("k", kit.keys.public("k"))
    with pytest.raises(ValueError):
        kit.partner_of("310000", keys=(key, key))
    with pytest.raises(ValueError):
        PartnerKey("k", kit.keys.public("k"), valid_from=T, valid_until=T)
    with pytest.raises(ValueError):
        PartnerKey("k", kit.keys.public("k"), valid_from=T.replace(tzinfo=None))


def test_keys_from_jwks(kit: Any) -> None:
    """A partner's jwks.json becomes keys, with validity windows given by kid."""
    doc = {"keys": [{**kit.keys.public("a"), "kid": "a"}, {**kit.keys.public("b"), "kid": "b"}]}
    keys = keys_from_jwks(doc, {"a": (None, T)})
    assert [(k.kid, k.valid_until) for k in keys] == [("a", T), ("b", None)]
    bads: list[dict[str, Any]] = [{}, {"keys": []}, {"keys": [{"kty": "OKP"}]}]
    for bad in bads:
        with pytest.raises(ValueError):
            keys_from_jwks(bad)


def test_domestic_needs_both_flag_and_configured_region(kit: Any) -> None:
    """A partner is domestic only if flagged so and its region is configured; empty denies."""
    policy = DomesticPolicy(frozenset({"320000"}))
    assert policy.is_domestic(kit.partner_of("320000", domestic=True))
    assert not policy.is_domestic(kit.partner_of("320000", domestic=False))
    assert not policy.is_domestic(kit.partner_of("810000", domestic=True))
    assert not DomesticPolicy().is_domestic(kit.partner_of("320000", domestic=True))


def test_registry_lookup(kit: Any) -> None:
    """An unregistered region raises UnknownPartner (403)."""
    registry = TrustRegistry([kit.partner_of("320000"), kit.partner_of("310000")])
    assert [p.region for p in registry] == ["310000", "320000"]
    registry.remove("320000")
    with pytest.raises(UnknownPartner):
        registry.get("320000")
    assert len(registry) == 1 and "310000" in registry
