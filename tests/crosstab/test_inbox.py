"""The pure inbox decision: every rejection code, the contract's order, batch semantics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from credcore.clock import CST
from crosstab.crosswalk import packaged_crosswalk
from crosstab.errors import REJECTION_ORDER, BatchTooLarge, MalformedBatch
from crosstab.inbox import InboxResult, InboxState, decide
from crosstab.records import MAX_BATCH, TYP
from crosstab.trust import Partner, PartnerKey

SH = "310000"


def judge(
    kit: Any,
    batch: list[Any],
    state: InboxState | None = None,
    partner: Partner | None = None,
    now: dt.datetime | None = None,
) -> InboxResult:
    return decide(
        partner or kit.partner_of(SH),
        batch,
        state or InboxState(),
        now=now or kit.T0,
        crosswalk=packaged_crosswalk(),
    )


def only_error(result: InboxResult) -> str:
    assert len(result.rejected) == 1, result.body()
    return result.rejected[0].error


def test_valid_batch_is_accepted(kit: Any) -> None:
    """Records in seq order from the right partner are all accepted and all new."""
    batch = [kit.sign(kit.payload(seq=n)) for n in (1, 2, 5)]
    result = judge(kit, batch)
    assert result.body() == {"accepted": ["310000-1", "310000-2", "310000-5"], "rejected": []}
    assert [a.record.seq for a in result.to_store] == [1, 2, 5]
    assert result.to_store[0].mapped is not None
    assert result.to_store[0].mapped.our_grade == "A"


def test_rejection_codes_are_the_contracts() -> None:
    """The order of checks is exactly the contract's list."""
    assert REJECTION_ORDER == (
        "invalid_record",
        "wrong_issuer",
        "unknown_key",
        "bad_signature",
        "expired",
        "replay",
        "stale_seq",
        "unmapped_grade",
    )


def test_garbage_is_invalid_record(kit: Any) -> None:
    """A string that is not a JWS is rejected as invalid_record with no jti."""
    result = judge(kit, ["garbage"])
    assert only_error(result) == "invalid_record"
    assert result.rejected[0].body()["jti"] is None


def test_future_iat_is_invalid_record(kit: Any) -> None:
    """A record issued more than the allowed skew in the future is not sane."""
    assert only_error(judge(kit, [kit.sign(kit.payload(iat=kit.IAT0 + 3600))])) == "invalid_record"


def test_partner_claiming_another_region_is_wrong_issuer(kit: Any) -> None:
    """A valid signature by Shanghai on a record claiming Jiangsu's iss is wrong_issuer."""
    jws = kit.sign(kit.payload(iss="320000"), kid="310000-k1")
    assert only_error(judge(kit, [jws])) == "wrong_issuer"


def test_type_not_allowed_is_wrong_issuer(kit: Any) -> None:
    """A record type the partner is not registered for is wrong_issuer."""
    partner = kit.partner_of(SH, record_types=frozenset({"evaluation"}))
    body = kit.payload(
        type="joint_punishment",
        scheme=None,
        grade=None,
        list_name="失信被执行人",
        decision_number="（2025）沪01执1号",
    )
    assert only_error(judge(kit, [kit.sign(body)], partner=partner)) == "wrong_issuer"


def test_unknown_kid_is_unknown_key(kit: Any) -> None:
    """A kid the partner never registered is unknown_key."""
    jws = kit.sign(kit.payload(), kid="310000-k9")
    result = judge(kit, [jws])
    assert only_error(result) == "unknown_key"
    assert "unknown" in result.rejected[0].error_description


def test_key_outside_validity_is_unknown_key(kit: Any) -> None:
    """A registered key used for a record whose iat is outside its window is unknown_key."""
    key = PartnerKey(
        "310000-k1",
        kit.keys.public("310000-k1"),
        valid_until=dt.datetime.fromtimestamp(kit.IAT0 - 7200, dt.UTC),
    )
    partner = kit.partner_of(SH, keys=(key,))
    result = judge(kit, [kit.sign(kit.payload())], partner=partner)
    assert only_error(result) == "unknown_key"
    assert "not valid" in result.rejected[0].error_description


def test_forged_signature_is_bad_signature(kit: Any) -> None:
    """A record naming the partner's kid but signed by another key is bad_signature."""
    header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
    forged = kit.raw_jws(header, kit.payload(), kit.keys["attacker"])
    assert only_error(judge(kit, [forged])) == "bad_signature"


def test_past_valid_until_is_expired(kit: Any) -> None:
    """A record whose valid_until is before today (CST) is expired; today itself is fine."""
    assert only_error(judge(kit, [kit.sign(kit.payload(valid_until="2025-11-24"))])) == "expired"
    assert judge(kit, [kit.sign(kit.payload(valid_until="2025-11-25"))]).rejected == []


def test_expiry_uses_the_china_standard_time_date(kit: Any) -> None:
    """At 00:30 CST on the 25th (16:30 UTC on the 24th) a record valid until the 24th expired."""
    now = dt.datetime(2025, 11, 25, 0, 30, tzinfo=CST)
    jws = kit.sign(kit.payload(valid_until="2025-11-24", iat=int(now.timestamp()) - 60))
    assert only_error(judge(kit, [jws], now=now)) == "expired"


def test_same_jti_different_record_is_replay(kit: Any) -> None:
    """A jti already accepted for other content is a replay, even with a fresh seq."""
    state = InboxState(known={"310000-1": "0" * 64}, last_seq={SH: 1})
    jws = kit.sign(kit.payload(seq=2, jti="310000-1"))
    assert only_error(judge(kit, [jws], state)) == "replay"


def test_out_of_order_seq_is_stale(kit: Any) -> None:
    """A seq not above the last accepted is stale_seq, including earlier in the same batch."""
    assert (
        only_error(judge(kit, [kit.sign(kit.payload(seq=3))], InboxState(last_seq={SH: 3})))
        == "stale_seq"
    )
    result = judge(kit, [kit.sign(kit.payload(seq=n)) for n in (2, 1, 3)])
    assert result.accepted == ["310000-2", "310000-3"]
    assert [(r.index, r.jti, r.error) for r in result.rejected] == [(1, "310000-1", "stale_seq")]


def test_unmapped_grade(kit: Any) -> None:
    """An evaluation under a grade no crosswalk maps is unmapped_grade."""
    jws = kit.sign(kit.payload(scheme="csj_enterprise_credit", grade="AAAA"))
    assert only_error(judge(kit, [jws])) == "unmapped_grade"


def test_identical_resend_is_accepted_and_not_new(kit: Any) -> None:
    """An already accepted record sent again is accepted, but not stored a second time."""
    jws = kit.sign(kit.payload())
    first = judge(kit, [jws])
    state = InboxState(known={"310000-1": first.to_store[0].digest}, last_seq={SH: 1})
    again = judge(kit, [jws, jws], state)
    assert again.accepted == ["310000-1", "310000-1"]
    assert again.to_store == []


def test_duplicate_inside_one_batch_is_stored_once(kit: Any) -> None:
    """The same record twice in a batch is accepted twice and stored once."""
    jws = kit.sign(kit.payload())
    result = judge(kit, [jws, jws])
    assert result.accepted == ["310000-1", "310000-1"]
    assert len(result.to_store) == 1


def test_one_bad_record_never_rejects_the_others(kit: Any) -> None:
    """Good records around bad ones are accepted; each rejection names its own index."""
    batch = [
        kit.sign(kit.payload(seq=1)),
        "garbage",
        kit.sign(kit.payload(seq=2, grade="Z")),
        kit.sign(kit.payload(seq=3)),
        kit.sign(kit.payload(seq=4), kid="nope"),
        kit.sign(kit.payload(seq=5)),
    ]
    result = judge(kit, batch)
    assert result.accepted == ["310000-1", "310000-3", "310000-5"]
    assert [(r.index, r.error) for r in result.rejected] == [
        (1, "invalid_record"),
        (2, "unmapped_grade"),
        (4, "unknown_key"),
    ]


def test_rejected_records_do_not_advance_seq(kit: Any) -> None:
    """A rejected seq 5 does not make a later seq 4 stale."""
    batch = [kit.sign(kit.payload(seq=5, grade="Z")), kit.sign(kit.payload(seq=4))]
    assert judge(kit, batch).accepted == ["310000-4"]


# (payload changes, signing kid, expected): each breaks several checks; the first one wins.
ORDER_CASES = [
    (
        {"iss": "320000", "valid_until": "2020-12-31", "valid_from": "2020-01-01"},
        "310000-k9",
        "wrong_issuer",
    ),
    (
        {"valid_until": "2020-12-31", "valid_from": "2020-01-01", "grade": "Z"},
        "310000-k9",
        "unknown_key",
    ),
    ({"valid_until": "2020-12-31", "valid_from": "2020-01-01"}, "forged", "bad_signature"),
    (
        {"valid_until": "2020-12-31", "valid_from": "2020-01-01", "jti": "310000-1", "seq": 1},
        "310000-k1",
        "expired",
    ),
    ({"jti": "310000-1", "seq": 1, "grade": "Z"}, "310000-k1", "replay"),
    ({"seq": 1, "grade": "Z"}, "310000-k1", "stale_seq"),
]


@pytest.mark.parametrize(
    ("change", "kid", "expected"), ORDER_CASES, ids=[c[2] for c in ORDER_CASES]
)
def test_first_failing_check_names_the_rejection(
    kit: Any, change: dict[str, Any], kid: str, expected: str
) -> None:
    """A record that fails several checks is rejected with the earliest in the contract."""
    state = InboxState(known={"310000-1": "0" * 64}, last_seq={SH: 1})
    body = kit.payload(**{"seq": 2, "jti": "310000-2", **change})
    if kid == "forged":
        header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
        jws = kit.raw_jws(header, body, kit.keys["attacker"])
    else:
        jws = kit.sign(body, kid=kid)
    assert only_error(judge(kit, [jws], state)) == expected


def test_batch_over_the_limit_is_an_error(kit: Any) -> None:
    """A batch over the size limit fails as a whole with a clear message."""
    with pytest.raises(BatchTooLarge, match=f"at most {MAX_BATCH}") as info:
        judge(kit, ["x"] * (MAX_BATCH + 1))
    assert info.value.status == 413
    assert len(judge(kit, ["x"] * MAX_BATCH).rejected) == MAX_BATCH


@pytest.mark.parametrize("batch", [None, "jws", {"records": []}, 7])
def test_batch_that_is_not_a_list_is_an_error(kit: Any, batch: Any) -> None:
    """A batch must be a list of records."""
    with pytest.raises(MalformedBatch):
        judge(kit, batch)
