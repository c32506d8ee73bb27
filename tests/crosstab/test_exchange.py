"""Two regions joined in memory: push and pull both ways, revocation, rotation, cross-border."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from crosstab.errors import UnknownPartner
from crosstab.exchange import Region
from crosstab.outbox import Signer, evaluation, joint_entry, revocation
from crosstab.records import verify_record
from crosstab.trust import DomesticPolicy, PartnerKey, keys_from_jwks

SH, JS, HK = "310000", "320000", "810000"
D = dt.date


async def test_push_both_ways(pair: tuple[Region, Region], kit: Any) -> None:
    """Each region pushes its outbox into the other's inbox; both see the other's records."""
    sh, js = pair
    sh_jtis = await kit.issue_tax_grades(sh, 3)
    js_jtis = await kit.issue_tax_grades(js, 2)
    report = await sh.push_to(JS, kit.pusher(js, SH))
    assert (report.accepted, report.rejected, report.complete) == (sh_jtis, [], True)
    report = await js.push_to(SH, kit.pusher(sh, JS))
    assert report.accepted == js_jtis
    company = kit.uscc("91310000MA1K00001")
    [seen] = await js.recognitions(company)
    assert (seen.origin_region, seen.origin_name, seen.grade, seen.mapped_grade) == (
        SH,
        "Region 310000",
        "A",
        "A",
    )
    # Nothing new: a second push sends nothing and moves nothing.
    again = await sh.push_to(JS, kit.pusher(js, SH))
    assert (again.pages, again.cursor_before, again.cursor_after) == (0, 3, 3)


async def test_pull_both_ways(pair: tuple[Region, Region], kit: Any) -> None:
    """Each region pulls the other's outbox with a cursor, in pages, to the end."""
    sh, js = pair
    sh_jtis = await kit.issue_tax_grades(sh, 5)
    js_jtis = await kit.issue_tax_grades(js, 4)
    report = await js.sync_from(SH, kit.puller(sh, JS), limit=2)
    assert (report.accepted, report.pages, report.cursor_after) == (sh_jtis, 3, 5)
    report = await sh.sync_from(JS, kit.puller(js, SH), limit=3)
    assert report.accepted == js_jtis
    assert await js.store.get_cursor(SH, "pull") == 5
    later = await kit.issue_tax_grades(sh, 1)
    report = await js.sync_from(SH, kit.puller(sh, JS))
    assert (report.cursor_before, report.accepted) == (5, later)


async def test_recognition_shows_origin_grades_validity_and_jws(
    pair: tuple[Region, Region], kit: Any, clock: Any
) -> None:
    """A received regional-scheme grade shows both grades, validity, status and a verifiable JWS."""
    sh, js = pair
    draft = evaluation(
        kit.HUAWEI,
        "csj_enterprise_credit",
        "AA",
        D(2025, 1, 1),
        D(2025, 12, 31),
        subject_name="华为技术有限公司",
    )
    await sh.issue(draft)
    await js.sync_from(SH, kit.puller(sh, JS))
    [rec] = await js.recognitions(kit.HUAWEI)
    body = rec.to_json(js.today())
    assert body["original_grade"] == {"scheme": "csj_enterprise_credit", "grade": "AA"}
    assert body["mapped_grade"] == {"scheme": "public_credit", "grade": "A"}
    assert (body["valid_until"], body["status"], body["revoked"]) == ("2025-12-31", "valid", False)
    [key] = sh.jwks()["keys"]
    assert verify_record(body["jws"], key).grade == "AA"
    clock.advance(40 * 86400)
    assert rec.to_json(js.today())["status"] == "expired"


async def test_revocation_marks_the_earlier_record(pair: tuple[Region, Region], kit: Any) -> None:
    """A revocation from the issuer marks its earlier record revoked on the receiving side."""
    sh, js = pair
    listed = await sh.issue(
        joint_entry(
            "joint_punishment", kit.XIAOMI, "失信被执行人名单", "（2025）沪01执100号", D(2025, 6, 1)
        )
    )
    await js.sync_from(SH, kit.puller(sh, JS))
    await sh.issue(revocation(kit.XIAOMI, listed.jti))
    await js.sync_from(SH, kit.puller(sh, JS))
    [rec] = await js.recognitions(kit.XIAOMI)
    assert (rec.jti, rec.revoked, rec.status(js.today())) == (listed.jti, True, "revoked")
    assert rec.revoked_by is not None


async def test_revocation_cannot_touch_another_regions_record(make_region: Any, kit: Any) -> None:
    """A region's revocation naming another region's jti revokes nothing."""
    zj = "330000"
    js = await make_region(JS, [kit.partner_of(SH), kit.partner_of(zj)])
    zj_body = kit.payload(iss=zj, jti="shared-jti", seq=1)
    await js.receive(zj, [kit.sign(zj_body)])
    attack = kit.payload(
        type="revocation",
        scheme=None,
        grade=None,
        valid_from=None,
        valid_until=None,
        revokes="shared-jti",
        jti="sh-rev-1",
    )
    result = await js.receive(SH, [kit.sign(attack)])
    assert result.accepted == ["sh-rev-1"]
    [rec] = await js.recognitions(kit.HUAWEI)
    assert rec.origin_region == zj and rec.revoked is False


async def test_resend_is_idempotent(pair: tuple[Region, Region], kit: Any) -> None:
    """Sending the same batch again accepts every record again and stores each once."""
    sh, js = pair
    batch = [kit.sign(kit.payload(seq=n, sub=kit.HUAWEI)) for n in (1, 2)]
    first = await js.receive(SH, batch)
    second = await js.receive(SH, batch)
    assert first.body() == second.body() == {"accepted": ["310000-1", "310000-2"], "rejected": []}
    assert len(await js.recognitions(kit.HUAWEI)) == 2


async def test_key_rotation_mid_stream(pair: tuple[Region, Region], kit: Any, clock: Any) -> None:
    """Records signed with the old key before T and the new key after T all verify; the old key
    after T does not."""
    sh, js = pair
    rotation = clock.now() + dt.timedelta(hours=1)
    old = PartnerKey(f"{SH}-k1", kit.keys.public(f"{SH}-k1"), valid_until=rotation)
    new = PartnerKey(f"{SH}-k2", kit.keys.public(f"{SH}-k2"), valid_from=rotation)
    await js.add_partner(kit.partner_of(SH, keys=(old, new)))

    before = await kit.issue_tax_grades(sh, 2)
    await js.sync_from(SH, kit.puller(sh, JS), limit=1)  # half the stream before rotation
    clock.advance(2 * 3600)
    sh.rotate_key(Signer.from_jwk(SH, f"{SH}-k2", kit.keys[f"{SH}-k2"]))
    after = await kit.issue_tax_grades(sh, 2)
    report = await js.sync_from(SH, kit.puller(sh, JS), limit=1)
    assert report.accepted == after and report.rejected == []
    assert [k["kid"] for k in sh.jwks()["keys"]] == [f"{SH}-k2", f"{SH}-k1"]
    assert len(before) == 2

    late_old = kit.sign(kit.payload(seq=99, jti="late", iat=int(clock.time())), kid=f"{SH}-k1")
    result = await js.receive(SH, [late_old])
    assert [r.error for r in result.rejected] == ["unknown_key"]


async def test_domestic_only_records_never_go_abroad(make_region: Any, kit: Any) -> None:
    """Domestic-only records and their revocations reach the domestic partner, never Hong Kong,
    by pull or push, even when Hong Kong is wrongly flagged domestic."""
    sh = await make_region(SH, [kit.partner_of(JS), kit.partner_of(HK, domestic=True)])
    hk = await make_region(HK, [kit.partner_of(SH)], domestic=DomesticPolicy(frozenset({HK})))
    public = await sh.issue(
        evaluation(kit.HUAWEI, "tax_credit", "B", D(2025, 4, 1), D(2026, 3, 31))
    )
    secret = await sh.issue(
        evaluation(kit.XIAOMI, "tax_credit", "D", D(2025, 4, 1), D(2026, 3, 31), domestic_only=True)
    )
    secret_revoked = await sh.issue(revocation(kit.XIAOMI, secret.jti))
    assert secret_revoked.domestic_only

    domestic_page = await sh.outbox_page(JS, 0, 100)
    assert len(domestic_page.records) == 3
    abroad_page = await sh.outbox_page(HK, 0, 100)
    assert abroad_page.records == [public.jws]
    assert secret.jws not in abroad_page.records

    pulled = await hk.sync_from(SH, kit.puller(sh, HK))
    assert pulled.accepted == [public.jti]
    pushed = await sh.push_to(HK, kit.pusher(hk, SH))
    assert pushed.accepted == [public.jti]
    assert await hk.recognitions(kit.XIAOMI) == []


async def test_unknown_partner_is_refused(pair: tuple[Region, Region], kit: Any) -> None:
    """A caller that is not a registered partner can neither push nor pull."""
    sh, _ = pair
    with pytest.raises(UnknownPartner) as info:
        await sh.receive("440000", [])
    assert info.value.status == 403
    with pytest.raises(UnknownPartner):
        await sh.outbox_page("440000", 0)
    await sh.remove_partner(JS)
    with pytest.raises(UnknownPartner):
        await sh.outbox_page(JS, 0)


async def test_partner_registered_from_its_published_jwks(make_region: Any, kit: Any) -> None:
    """A partner registered from its own jwks.json (signing under Ed25519) is accepted."""
    sh = await make_region(SH, [kit.partner_of(JS)])
    sh.rotate_key(Signer.from_jwk(SH, f"{SH}-k2", kit.keys[f"{SH}-k2"], alg="Ed25519"))
    js = await make_region(JS, [])
    doc = sh.jwks()
    assert doc["keys"][0]["alg"] == "Ed25519"
    await js.add_partner(kit.partner_of(SH, keys=keys_from_jwks(doc)))
    jtis = await kit.issue_tax_grades(sh, 2)
    assert (await js.sync_from(SH, kit.puller(sh, JS))).accepted == jtis
