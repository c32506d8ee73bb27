"""Records as JWS (CONTRACTS.md section 6): parsing, signing, verifying, and refusing bad ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import OKPKey

from crosstab import _jose
from crosstab.errors import BadSignature, InvalidRecord
from crosstab.records import (
    MAX_RECORD_BYTES,
    TYP,
    parse_payload,
    parse_record,
    peek_jti,
    sign_record,
    verify_record,
)


@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_sign_and_verify_round_trip(kit: Any, alg: str) -> None:
    """A signed record verifies under both names of the algorithm and keeps its payload."""
    body = kit.payload()
    jws = kit.sign(body, alg=alg)
    record = verify_record(jws, kit.keys.public("310000-k1"))
    assert record.to_payload() == body
    header = json.loads(_jose.b64url_decode(jws.split(".")[0]))
    assert header == {"alg": alg, "kid": "310000-k1", "typ": TYP}


def test_verify_accepts_a_jwk_bound_to_the_other_alg_name(kit: Any) -> None:
    """A JWK published with alg EdDSA verifies a record signed under Ed25519."""
    jws = kit.sign(kit.payload(), alg="Ed25519")
    verify_record(jws, {**kit.keys.public("310000-k1"), "alg": "EdDSA", "use": "sig"})


def test_wrong_key_is_bad_signature(kit: Any) -> None:
    """A record verified with another region's key fails as bad_signature."""
    jws = kit.sign(kit.payload())
    with pytest.raises(BadSignature):
        verify_record(jws, kit.keys.public("320000-k1"))


def test_ed448_keys_are_refused(kit: Any) -> None:
    """An Ed448 key neither signs nor verifies: the contract's EdDSA means Ed25519 here."""
    ed448 = OKPKey.generate_key("Ed448", private=True)
    with pytest.raises(ValueError):
        sign_record(kit.payload(), ed448, "k")
    with pytest.raises(BadSignature):
        verify_record(kit.sign(kit.payload()), ed448.as_dict(private=False))


def test_private_jwk_is_never_a_verification_key(kit: Any) -> None:
    """A private JWK offered as a partner's key is refused."""
    private = dict(kit.keys["310000-k1"].as_dict(private=True))
    with pytest.raises(BadSignature):
        verify_record(kit.sign(kit.payload()), private)


GARBAGE = [
    42,
    None,
    "",
    "garbage",
    "a.b",
    "a.b.c.d",
    "..",
    "!!!.@@@.###",
    "eyJhbGciOiJFZERTQSJ9.eyJ9.AAAA",
]


@pytest.mark.parametrize("value", GARBAGE, ids=repr)
def test_garbage_is_invalid_record(value: object) -> None:
    """Anything that is not a three-part base64url JWS of JSON objects is invalid_record."""
    with pytest.raises(InvalidRecord):
        parse_record(value)


@pytest.mark.parametrize("name", ["subject_name", "authority"])
def test_a_personal_id_number_in_any_text_is_invalid_record(kit: Any, name: str) -> None:
    """The signed record is released as it is (its `jws` carries the payload), where no mask
    can reach: a record naming a person's ID number is neither signed here nor taken in."""
    body = {**kit.payload(), name: "张三（11010519491231002X）个体户"}
    with pytest.raises(InvalidRecord, match="personal identity number"):
        kit.sign(body)
    kid = f"{body['iss']}-k1"  # as a partner that does not check would sign it
    header = {"alg": "EdDSA", "kid": kid, "typ": TYP}
    raw = jws.serialize_compact(header, json.dumps(body).encode(), kit.keys[kid], registry=_jose.REGISTRY)
    with pytest.raises(InvalidRecord, match="personal identity number"):
        parse_record(raw)


def test_truncated_jws_is_invalid_record(kit: Any) -> None:
    """A JWS cut in the middle of its payload does not decode."""
    jws = kit.sign(kit.payload())
    head, body, _ = jws.split(".")
    with pytest.raises(InvalidRecord):
        parse_record(f"{head}.{body[: len(body) // 2]}")
    with pytest.raises(InvalidRecord):
        parse_record(f"{head}.{body[:-7]}.{_}")


def test_truncated_signature_is_bad_signature(kit: Any) -> None:
    """A JWS whose signature lost its tail still parses but does not verify."""
    jws = kit.sign(kit.payload())
    cut = jws[: jws.rindex(".") + 40]
    with pytest.raises((BadSignature, InvalidRecord)):
        verify_record(cut, kit.keys.public("310000-k1"))


def test_oversized_jws_is_invalid_record(kit: Any) -> None:
    """A correctly signed record over the size limit is refused before anything is decoded."""
    header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
    big = kit.raw_jws(
        header, kit.payload(subject_name="x" * MAX_RECORD_BYTES), kit.keys["310000-k1"]
    )
    with pytest.raises(InvalidRecord, match="at most"):
        parse_record(big)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "kid": "310000-k1", "typ": TYP},
        {"alg": "HS256", "kid": "310000-k1", "typ": TYP},
        {"alg": "EdDSA", "kid": "310000-k1", "typ": "JWT"},
        {"alg": "EdDSA", "typ": TYP},
        {"alg": "EdDSA", "kid": "", "typ": TYP},
        {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP, "jwk": {"kty": "OKP"}},
        {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP, "b64": False, "crit": ["b64"]},
    ],
    ids=["none", "hs256", "typ", "no-kid", "empty-kid", "embedded-jwk", "b64"],
)
def test_bad_headers_are_invalid_record(kit: Any, header: dict[str, Any]) -> None:
    """The protected header holds exactly alg (EdDSA or Ed25519), kid and typ."""
    with pytest.raises(InvalidRecord):
        parse_record(kit.raw_jws(header, kit.payload(), kit.keys["310000-k1"]))


def test_duplicate_members_are_invalid_record(kit: Any) -> None:
    """A payload with a member twice is refused: two parsers could read two records."""
    header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
    text = json.dumps(kit.payload())[:-1] + ', "grade": "D"}'
    with pytest.raises(InvalidRecord, match="duplicate"):
        parse_record(kit.raw_jws(header, text.encode(), kit.keys["310000-k1"]))


BAD_PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("unknown type", {"type": "rating"}),
    ("bad iss", {"iss": "31000"}),
    ("iss not a string", {"iss": 310000}),
    ("bad sub", {"sub": "914403001922038217"}),
    ("seq zero", {"seq": 0}),
    ("seq string", {"seq": "1"}),
    ("seq bool", {"seq": True}),
    ("iat float", {"iat": 1764000000.0}),
    ("iat huge", {"iat": 2**60}),
    ("date format", {"valid_from": "2025/04/01"}),
    ("no such date", {"valid_until": "2026-02-30"}),
    ("until before from", {"valid_from": "2026-04-01"}),
    ("missing grade", {"grade": None}),
    ("missing validity", {"valid_until": None}),
    ("unknown member", {"score": 99}),
    ("revokes on evaluation", {"revokes": "x"}),
    ("list member on evaluation", {"list_name": "x"}),
    ("control character", {"subject_name": "a\x00b"}),
    ("empty grade", {"grade": " "}),
    ("jti with space", {"jti": "a b"}),
    ("missing jti", {"jti": None}),
    ("bad authority_uscc", {"authority_uscc": "123"}),
    (
        "list entry without decision",
        {"type": "joint_punishment", "scheme": None, "grade": None, "list_name": "失信被执行人"},
    ),
    (
        "revocation of itself",
        {
            "type": "revocation",
            "scheme": None,
            "grade": None,
            "valid_from": None,
            "valid_until": None,
            "revokes": "310000-1",
        },
    ),
]


@pytest.mark.parametrize("change", [c for _, c in BAD_PAYLOADS], ids=[n for n, _ in BAD_PAYLOADS])
def test_bad_payloads_are_invalid_record(kit: Any, change: dict[str, Any]) -> None:
    """Each payload that breaks the contract's member rules is refused, naming the problem."""
    with pytest.raises(InvalidRecord):
        parse_payload(kit.payload(**change))
    header = {"alg": "EdDSA", "kid": "310000-k1", "typ": TYP}
    with pytest.raises(InvalidRecord):
        parse_record(kit.raw_jws(header, kit.payload(**change), kit.keys["310000-k1"]))


def test_each_type_parses_with_its_members(kit: Any) -> None:
    """Evaluation, both list entries and a revocation parse with exactly their members."""
    list_entry = {
        "scheme": None,
        "grade": None,
        "valid_until": None,
        "list_name": "守信激励对象名单",
        "decision_number": "沪发改〔2025〕12号",
    }
    assert parse_payload(kit.payload(type="joint_reward", **list_entry)).type == "joint_reward"
    punish = parse_payload(kit.payload(type="joint_punishment", **list_entry))
    assert punish.valid_until is None
    revocation = parse_payload(
        kit.payload(
            type="revocation",
            scheme=None,
            grade=None,
            valid_from=None,
            valid_until=None,
            revokes="310000-0",
            seq=2,
        )
    )
    assert revocation.revokes == "310000-0"


def test_sign_refuses_an_invalid_payload(kit: Any) -> None:
    """We never sign what a partner would have to refuse."""
    with pytest.raises(InvalidRecord):
        sign_record(kit.payload(sub="not-a-code"), kit.keys["310000-k1"], "310000-k1")


def test_digest_ignores_member_order(kit: Any) -> None:
    """Two serializations of one payload are the same record."""
    body = kit.payload()
    reordered = dict(reversed(list(body.items())))
    assert parse_payload(body).digest() == parse_payload(reordered).digest()


def test_peek_jti_never_raises(kit: Any) -> None:
    """The jti for a rejection entry is read when possible and None otherwise."""
    assert peek_jti(kit.sign(kit.payload())) == "310000-1"
    for value in GARBAGE:
        assert peek_jti(value) is None


def test_non_canonical_base64_signature_is_refused(kit: Any) -> None:
    """Another spelling of the same signature bytes is not accepted (no JWS malleability)."""
    jws = kit.sign(kit.payload())
    last = jws[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 64 signature bytes leave 4 unused bits in the last character: flip one of them.
    twin = jws[:-1] + alphabet[alphabet.index(last) ^ 1]
    with pytest.raises(InvalidRecord):
        parse_record(twin)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_character_fails(kit: Any, data: st.DataObject) -> None:
    """Changing any one character of a signed record makes it fail parsing or verification."""
    jws = kit.sign(kit.payload())
    position = data.draw(st.integers(0, len(jws) - 1))
    replacement = data.draw(st.sampled_from("AQgw_-.x0"))
    if jws[position] == replacement:
        return
    tampered = jws[:position] + replacement + jws[position + 1 :]
    with pytest.raises((InvalidRecord, BadSignature)):
        verify_record(tampered, kit.keys.public("310000-k1"))
