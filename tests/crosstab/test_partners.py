"""Partner registrations: body validation, key merging on re-registration (rotation), and the
whole lifecycle of a partner in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import pytest

from credcore.errors import InvalidParameter
from crosstab.errors import UnknownPartner
from crosstab.partners import build_partner, merge_keys, parse_jwks, parse_registration
from crosstab.runtime import CrosstabRuntime, RuntimeOptions
from crosstab.trust import PartnerKey

SH, JS = "310000", "320000"
NOW = dt.datetime(2025, 11, 25, 2, 0, tzinfo=dt.UTC)


def jwks(kit: Any, *kids: str) -> dict[str, Any]:
    return {"keys": [{**kit.keys.public(kid), "kid": kid, "use": "sig", "alg": "EdDSA"} for kid in kids]}


def body(kit: Any, **over: Any) -> dict[str, Any]:
    out = {"region": JS, "name": " Jiangsu ", "jwks": jwks(kit, "js-1"), "record_types": ["evaluation"]}
    out.update(over)
    return out


def test_a_good_registration_is_parsed(kit: Any) -> None:
    """Region, trimmed name, keys, types; domestic is false unless said."""
    reg = parse_registration(body(kit), SH)
    assert (reg.region, reg.name, [k.kid for k in reg.keys], reg.record_types, reg.domestic) == (
        JS, "Jiangsu", ["js-1"], frozenset({"evaluation"}), False)
    assert parse_registration(body(kit, domestic=True), SH).domestic is True


@pytest.mark.parametrize(
    ("over", "member"),
    [
        ({"region": "320000 "}, "region"),
        ({"region": 320000}, "region"),
        ({"region": SH}, "region"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"record_types": "evaluation"}, "record_types"),
        ({"record_types": ["evaluation", "rumour"]}, "record_types"),
        ({"jwks": []}, "jwks"),
        ({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}}, "jwks"),
        ({"domestic": 1}, "domestic"),
        ({"endpoint": "http://x"}, "endpoint"),
    ],
)
def test_bad_registration_names_the_member(kit: Any, over: dict[str, Any], member: str) -> None:
    """Each malformed member is an InvalidParameter naming it."""
    with pytest.raises(InvalidParameter) as info:
        parse_registration(body(kit, **over), SH)
    assert info.value.parameter == member


def test_jwks_refuses_private_duplicate_and_too_many_keys(kit: Any) -> None:
    """A private part, a repeated kid or more than 16 keys is refused; extra members are dropped."""
    private = {"keys": [{**kit.keys["js-1"].as_dict(private=True), "kid": "js-1"}]}
    doubled = {"keys": jwks(kit, "js-1")["keys"] * 2}
    many = jwks(kit, *[f"k{i}" for i in range(17)])
    for bad in (private, doubled, many):
        with pytest.raises(InvalidParameter):
            parse_jwks(bad)
    [key] = parse_jwks({"keys": [{**jwks(kit, "js-1")["keys"][0], "x5u": "http://evil"}]})
    assert "x5u" not in key.jwk


def test_merge_retires_dropped_keys_and_keeps_windows(kit: Any) -> None:
    """A dropped key ends now; a kept key keeps its window; a new key has none."""
    start = NOW - dt.timedelta(days=30)
    old = (PartnerKey("a", kit.keys.public("a"), valid_from=start), PartnerKey("b", kit.keys.public("b")))
    new = (PartnerKey("b", kit.keys.public("b")), PartnerKey("c", kit.keys.public("c")))
    merged = {k.kid: k for k in merge_keys(old, new, NOW)}
    assert (merged["a"].valid_from, merged["a"].valid_until) == (start, NOW)
    assert merged["b"] == old[1]
    assert (merged["c"].valid_from, merged["c"].valid_until) == (None, None)


def test_merge_refuses_a_kid_reused_for_another_key(kit: Any) -> None:
    """A kid must name one key for good."""
    with pytest.raises(InvalidParameter, match="already registered"):
        merge_keys((PartnerKey("a", kit.keys.public("a")),), (PartnerKey("a", kit.keys.public("z")),), NOW)


def test_merge_drops_a_key_that_was_never_valid(kit: Any) -> None:
    """A key whose window would end before it begins is left out rather than stored empty."""
    future = PartnerKey("a", kit.keys.public("a"), valid_from=NOW + dt.timedelta(days=1))
    assert merge_keys((future,), (PartnerKey("b", kit.keys.public("b")),), NOW) == (
        PartnerKey("b", kit.keys.public("b")),)


def test_re_registration_keeps_endpoints(kit: Any) -> None:
    """Building the partner again keeps where its outbox is."""
    reg = parse_registration(body(kit), SH)
    first = build_partner(reg, None, NOW)
    moved = build_partner(reg, first.__class__(**{**vars(first), "outbox_url": "https://js/outbox"}), NOW)
    assert moved.outbox_url == "https://js/outbox" and moved.keys == first.keys


async def test_partner_lifecycle_in_the_database(databases: Any, kit: Any, clock: Any) -> None:
    """Register, re-register (the client is replaced), link, list and remove a partner through
    the runtime, with the real OAuth clients and audit log on the same database, on SQLite and
    on PostgreSQL: partners, keys, partner clients and links end as they should."""
    from audit.writer import AuditWriter
    from gateway.admin import audit_admin
    from gateway.oauth import OAuthService

    engine = await databases.engine("partners")
    oauth = OAuthService(engine, issuer="http://127.0.0.1", audience="test", clock=clock)
    await oauth.start()
    writer = AuditWriter(engine)
    await writer.start()
    try:
        rt = await CrosstabRuntime.start(
            engine, RuntimeOptions(SH, frozenset({SH, JS})), audit=writer, clients=oauth,
            audit_admin=functools.partial(audit_admin, writer, clock), clock=clock,
        )
        first = await rt.register_partner(body(kit, domestic=True), actor="admin")
        clock.advance(60)
        again = await rt.register_partner(body(kit, jwks=jwks(kit, "js-2"), domestic=True), actor="admin")
        assert await rt.partner_of(again["client_id"]) == JS
        with pytest.raises(UnknownPartner):
            await rt.partner_of(first["client_id"])
        await rt.link_partner(JS, "https://credit.js.example/", "sh-at-js", "secret", actor="admin")
        [listed] = await rt.partners()
        assert (listed["client_id"], listed["url"], listed["domestic"], [k["kid"] for k in listed["keys"]]) == (
            again["client_id"], "https://credit.js.example", True, ["js-1", "js-2"])
        assert listed["keys"][0]["valid_until"] is not None and listed["keys"][1]["valid_until"] is None
        await rt.remove_partner(JS, actor="admin")
        assert await rt.partners() == [] and await rt.access.links() == []
        with pytest.raises(UnknownPartner):
            await rt.partner_of(again["client_id"])
    finally:
        await writer.close()
