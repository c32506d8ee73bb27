"""Mutual-recognition records (CONTRACTS.md section 6): the payload model, parsing, signing.

A record travels as a JWS in compact serialization with the protected header
`{"alg": "EdDSA" | "Ed25519", "kid", "typ": "credgate-mr+jwt"}` and a JSON payload. Everything
here is pure: bytes and values in, a `Record` out, or `InvalidRecord` / `BadSignature` raised.

Parsing is strict on purpose. The payload is stored verbatim and later shown to operators as
another region's word about a company, so a record either matches the contract exactly (known
members only, the members its type needs, none that belong to another type) or is refused
whole. Checks that need a partner, a clock or the store (issuer, key, expiry, replay, seq,
crosswalk) belong to `crosstab.inbox`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from joserfc import jws as _jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from credcore.canonical import canonical_json, digest_json
from credcore.codes import find_resident_ids, uscc_problem
from crosstab import _jose
from crosstab.errors import BadSignature, InvalidRecord

TYP = "credgate-mr+jwt"
RECORD_TYPES: tuple[str, ...] = ("evaluation", "joint_reward", "joint_punishment", "revocation")
LIST_TYPES = frozenset({"joint_reward", "joint_punishment"})
MAX_RECORD_BYTES = 16 * 1024  # one JWS; a real record is well under 2 KiB
MAX_BATCH = 500  # records per inbox POST and per outbox page
_MAX_INT = 2**53 - 1  # JSON numbers above this lose precision in other regions' parsers

_REGION = re.compile(r"^[1-9]\d{5}$")  # GB/T 2260 division code
_JTI = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
_SCHEME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Which optional members each type requires and which it may carry.
_COMMON = {"subject_name", "authority", "authority_uscc"}
_REQUIRED: dict[str, set[str]] = {
    "evaluation": {"scheme", "grade", "valid_from", "valid_until"},
    "joint_reward": {"list_name", "decision_number", "valid_from"},
    "joint_punishment": {"list_name", "decision_number", "valid_from"},
    "revocation": {"revokes"},
}
_ALLOWED: dict[str, set[str]] = {
    "evaluation": _COMMON | _REQUIRED["evaluation"],
    "joint_reward": _COMMON | _REQUIRED["joint_reward"] | {"valid_until"},
    "joint_punishment": _COMMON | _REQUIRED["joint_punishment"] | {"valid_until"},
    "revocation": _COMMON | _REQUIRED["revocation"],
}
_BASE = ("iss", "jti", "iat", "seq", "type", "sub")


@dataclass(frozen=True)
class Record:
    """One record's payload, validated. Optional members are None when absent."""

    iss: str
    jti: str
    iat: int
    seq: int
    type: str
    sub: str
    subject_name: str | None = None
    scheme: str | None = None
    grade: str | None = None
    list_name: str | None = None
    decision_number: str | None = None
    authority: str | None = None
    authority_uscc: str | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    revokes: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload: absent members left out, dates as YYYY-MM-DD."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            out[field.name] = value.isoformat() if isinstance(value, dt.date) else value
        return out

    def digest(self) -> str:
        """SHA-256 of the canonical payload: equal digests mean the same record."""
        return digest_json(self.to_payload())


@dataclass(frozen=True)
class ParsedRecord:
    """A structurally valid JWS whose signature has not been checked yet."""

    jws: str
    header: dict[str, Any]
    record: Record

    @property
    def kid(self) -> str:
        return str(self.header["kid"])


def _text(payload: dict[str, Any], name: str, limit: int) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidRecord(f"{name} must be a non-empty string of at most {limit} characters.")
    if _CONTROL.search(value):
        raise InvalidRecord(f"{name} contains control characters.")
    if find_resident_ids(value):
        # The signed record is released as it is (its `jws`), where no mask can reach: a personal
        # ID number must never enter the exchange at all.
        raise InvalidRecord(f"{name} carries a personal identity number; records name subjects by USCC only.")
    return value


def _matching(
    payload: dict[str, Any], name: str, pattern: re.Pattern[str], what: str
) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidRecord(f"{name} must be {what}.")
    return value


def _integer(payload: dict[str, Any], name: str, low: int) -> int:
    value = payload.get(name)
    # bool is an int in Python, and 1.0 is a float: neither is a JSON integer here.
    if type(value) is not int or not low <= value <= _MAX_INT:
        raise InvalidRecord(f"{name} must be an integer from {low} to {_MAX_INT}.")
    return value


def _date(payload: dict[str, Any], name: str) -> dt.date | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _DATE.match(value):
        raise InvalidRecord(f"{name} must be a date written YYYY-MM-DD.")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRecord(f"{name} is not a real calendar date.") from exc


def _uscc(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    problem = uscc_problem(value) if isinstance(value, str) else "it is not a string"
    if problem is not None:
        raise InvalidRecord(f"{name} is not a valid Unified Social Credit Code: {problem}.")
    return str(value)


def parse_payload(payload: dict[str, Any]) -> Record:
    """Validate a decoded payload against the contract; raise InvalidRecord naming the member."""
    kind = payload.get("type")
    if kind not in RECORD_TYPES:
        raise InvalidRecord(f"type must be one of {', '.join(RECORD_TYPES)}.")
    present = {k for k, v in payload.items() if v is not None}
    unknown = present - set(_BASE) - _ALLOWED[kind]
    if unknown:
        raise InvalidRecord(f"a {kind} record may not carry {', '.join(sorted(unknown))}.")
    missing = (set(_BASE) | _REQUIRED[kind]) - present
    if missing:
        raise InvalidRecord(f"a {kind} record needs {', '.join(sorted(missing))}.")
    record = Record(
        iss=str(_matching(payload, "iss", _REGION, "a six-digit GB/T 2260 division code")),
        jti=str(_matching(payload, "jti", _JTI, "1 to 128 printable ASCII characters")),
        iat=_integer(payload, "iat", 0),
        seq=_integer(payload, "seq", 1),
        type=kind,
        sub=str(_uscc(payload, "sub")),
        subject_name=_text(payload, "subject_name", 200),
        scheme=_matching(payload, "scheme", _SCHEME, "a lowercase scheme name"),
        grade=_text(payload, "grade", 16),
        list_name=_text(payload, "list_name", 200),
        decision_number=_text(payload, "decision_number", 100),
        authority=_text(payload, "authority", 200),
        authority_uscc=_uscc(payload, "authority_uscc"),
        valid_from=_date(payload, "valid_from"),
        valid_until=_date(payload, "valid_until"),
        revokes=_matching(payload, "revokes", _JTI, "the jti of an earlier record"),
    )
    if record.valid_from and record.valid_until and record.valid_until < record.valid_from:
        raise InvalidRecord("valid_until is before valid_from.")
    if record.revokes == record.jti:
        raise InvalidRecord("a revocation cannot revoke itself.")
    return record


def _peek(jws: object, name: str) -> object:
    try:
        if isinstance(jws, str) and len(jws) <= MAX_RECORD_BYTES and jws.count(".") == 2:
            return _jose.json_object(_jose.b64url_decode(jws.split(".")[1])).get(name)
    except ValueError:
        pass
    return None


def peek_jti(jws: object) -> str | None:
    """The payload's jti if it can be read at all (for rejection entries); never raises."""
    jti = _peek(jws, "jti")
    return jti if isinstance(jti, str) and _JTI.match(jti) else None


def peek_seq(jws: object) -> int | None:
    """The payload's seq if it is a positive integer (our own records, cursor holds); never raises."""
    seq = _peek(jws, "seq")
    return seq if type(seq) is int and 1 <= seq <= _MAX_INT else None


def peek_kid(jws: object) -> str | None:
    """The protected header's kid (unverified); never raises."""
    try:
        if isinstance(jws, str) and len(jws) <= MAX_RECORD_BYTES and jws.count(".") == 2:
            kid = _jose.json_object(_jose.b64url_decode(jws.split(".")[0])).get("kid")
            return kid if isinstance(kid, str) else None
    except ValueError:
        pass
    return None


def peek_sub(jws: object) -> str | None:
    """The payload's subject if it is a valid USCC (for audit entries); never raises."""
    sub = _peek(jws, "sub")
    return sub if isinstance(sub, str) and uscc_problem(sub) is None else None


def parse_record(jws: object) -> ParsedRecord:
    """Check a JWS's form, header and payload (not its signature); raise InvalidRecord."""
    if not isinstance(jws, str):
        raise InvalidRecord("A record is a JWS compact serialization string.")
    if len(jws) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"A record is at most {MAX_RECORD_BYTES} bytes.")
    parts = jws.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidRecord("A record is a JWS of three non-empty base64url parts.")
    try:
        header = _jose.json_object(_jose.b64url_decode(parts[0]))
        payload = _jose.json_object(_jose.b64url_decode(parts[1]))
        _jose.b64url_decode(parts[2])
    except ValueError as exc:
        raise InvalidRecord(f"The JWS does not decode: {exc}.") from exc
    # Exactly these three members: no crit/b64 (which change what is signed), no jwk/jku/x5u
    # (which would let the record name its own key).
    if set(header) != {"alg", "kid", "typ"}:
        raise InvalidRecord("The protected header must hold exactly alg, kid and typ.")
    if header["alg"] not in _jose.ALGORITHMS:
        raise InvalidRecord("The header's alg must be EdDSA or Ed25519.")
    if header["typ"] != TYP:
        raise InvalidRecord(f"The header's typ must be {TYP}.")
    if not isinstance(header["kid"], str) or not _JTI.match(header["kid"]):
        raise InvalidRecord("The header's kid must be 1 to 128 printable ASCII characters.")
    return ParsedRecord(jws=jws, header=header, record=parse_payload(payload))


def verify_signature(parsed: ParsedRecord, key: OKPKey | dict[str, Any]) -> None:
    """Raise BadSignature unless `key` (an Ed25519 public key) signed this JWS."""
    try:
        _jws.deserialize_compact(parsed.jws, _jose.import_public_key(key), registry=_jose.REGISTRY)
    except (JoseError, ValueError) as exc:
        raise BadSignature("The signature does not verify with the partner's key.") from exc


def verify_record(jws: str, key: OKPKey | dict[str, Any]) -> Record:
    """Parse and verify a record with one public key: what anyone can do with a kept JWS."""
    parsed = parse_record(jws)
    verify_signature(parsed, key)
    return parsed.record


def sign_record(
    payload: Record | dict[str, Any], key: OKPKey | dict[str, Any], kid: str, *, alg: str = "EdDSA"
) -> str:
    """Sign a payload (validated first: we never publish what a partner must refuse)."""
    record = payload if isinstance(payload, Record) else parse_payload(payload)
    if alg not in _jose.ALGORITHMS or not _JTI.match(kid):
        raise ValueError("alg must be EdDSA or Ed25519 and kid printable ASCII")
    header = {"alg": alg, "kid": kid, "typ": TYP}
    body = canonical_json(record.to_payload())
    out = _jws.serialize_compact(
        header, body, _jose.import_private_key(key), registry=_jose.REGISTRY
    )
    if len(out) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"The signed record is over {MAX_RECORD_BYTES} bytes.")
    return out
