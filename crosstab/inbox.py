"""The inbox decision: which records of a partner's batch we accept, and why the others not.

Theory of operation. `decide` is a pure function of (the authenticated partner, the batch, the
store's state for that issuer, the time, the crosswalk). It never touches the store; the
caller persists the `new` acceptances one by one, in batch order (see `crosstab.exchange`).

Each record is judged on its own, by the contract's checks in the contract's order; the first
that fails names the rejection (CONTRACTS.md section 6):

    1 invalid_record   not a JWS, bad header or payload (`records.parse_record`), or an iat
                       more than the allowed skew in the future
    2 wrong_issuer     iss is not the partner's region, or the type is not allowed for it
    3 unknown_key      no key of that partner has the kid, or it was not valid at iat
    4 bad_signature    the kid's key did not sign it
    5 expired          valid_until before today (China Standard Time)
    6 replay           the jti was already accepted for a different record
                       (the same record again is accepted once more and not stored again)
    7 stale_seq        seq not above the last accepted from that issuer
    8 unmapped_grade   an evaluation whose scheme and grade no crosswalk maps

The state moves as the batch is read: a record accepted at index 3 makes a copy at index 7 an
idempotent re-send, and a lower seq at index 7 stale. Rejected records move nothing, so one bad
record never affects another. A batch that is not a list, or is over the size limit, is an
error for the whole batch (it is refused before any record is read).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from credcore.clock import cst_date
from crosstab.crosswalk import Crosswalk, MappedGrade
from crosstab.errors import (
    BatchTooLarge,
    Expired,
    InvalidRecord,
    MalformedBatch,
    RecordRejected,
    Replay,
    StaleSeq,
    UnknownKey,
    WrongIssuer,
)
from crosstab.records import MAX_BATCH, Record, parse_record, peek_jti, verify_signature
from crosstab.trust import Partner

MAX_FUTURE_SKEW = 300  # seconds an iat may run ahead of our clock (partners' clocks drift)


@dataclass(frozen=True)
class InboxState:
    """What the store knows about an issuer: accepted jti -> payload digest, last seq."""

    known: Mapping[str, str] = field(default_factory=dict)
    last_seq: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    index: int
    jti: str
    jws: str
    record: Record
    digest: str
    mapped: MappedGrade | None
    new: bool  # False: an identical re-send of a record already stored


@dataclass(frozen=True)
class Rejected:
    index: int
    jti: str | None
    error: str
    error_description: str

    @classmethod
    def of(cls, index: int, jti: str | None, error: RecordRejected) -> Rejected:
        return cls(index, jti, error.code, error.description)

    def body(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "jti": self.jti,
            "error": self.error,
            "error_description": self.error_description,
        }


@dataclass
class InboxResult:
    """One outcome per batch entry, in batch order."""

    partner: str
    outcomes: list[Accepted | Rejected]

    @property
    def accepted(self) -> list[str]:
        return [o.jti for o in self.outcomes if isinstance(o, Accepted)]

    @property
    def rejected(self) -> list[Rejected]:
        return [o for o in self.outcomes if isinstance(o, Rejected)]

    @property
    def to_store(self) -> list[Accepted]:
        return [o for o in self.outcomes if isinstance(o, Accepted) and o.new]

    def reject(self, index: int, error: RecordRejected) -> None:
        """Turn an acceptance into a rejection (the store lost a race at write time)."""
        self.outcomes[index] = Rejected.of(index, self.outcomes[index].jti, error)

    def body(self) -> dict[str, Any]:
        """The contract's answer to `POST /crosstab/v1/inbox`."""
        return {"accepted": self.accepted, "rejected": [r.body() for r in self.rejected]}


def check_batch(batch: object, max_batch: int = MAX_BATCH) -> Sequence[object]:
    """The whole-batch checks: a list, and not over the limit."""
    if not isinstance(batch, list | tuple):
        raise MalformedBatch('The body must be {"records": [<jws>, ...]}.')
    if len(batch) > max_batch:
        raise BatchTooLarge(
            f"A batch holds at most {max_batch} records; this one has {len(batch)}."
        )
    return batch


def _judge(
    partner: Partner,
    item: object,
    index: int,
    known: Mapping[str, str],
    last_seq: Mapping[str, int],
    now: dt.datetime,
    crosswalk: Crosswalk,
    max_skew: int,
) -> Accepted:
    parsed = parse_record(item)  # 1 invalid_record
    record = parsed.record
    if record.iat > now.timestamp() + max_skew:
        raise InvalidRecord("iat is in the future.")
    if record.iss != partner.region:  # 2 wrong_issuer
        raise WrongIssuer(f"The record's iss {record.iss} is not the sender {partner.region}.")
    if not partner.allows(record.type):
        raise WrongIssuer(f"Region {partner.region} may not send {record.type} records.")
    key = partner.key_for(parsed.kid, record.iat)  # 3 unknown_key
    if key is None:
        why = "was not valid at the record's iat" if partner.has_kid(parsed.kid) else "is unknown"
        raise UnknownKey(f"Key {parsed.kid!r} of region {partner.region} {why}.")
    verify_signature(parsed, key.jwk)  # 4 bad_signature
    if record.valid_until is not None and record.valid_until < cst_date(now):  # 5 expired
        raise Expired(f"The record expired on {record.valid_until.isoformat()}.")
    digest = record.digest()
    prior = known.get(record.jti)  # 6 replay
    if prior is not None:
        if prior != digest:
            raise Replay(f"jti {record.jti!r} was already used for a different record.")
        return Accepted(index, record.jti, parsed.jws, record, digest, None, new=False)
    last = last_seq.get(record.iss, 0)  # 7 stale_seq
    if record.seq <= last:
        raise StaleSeq(f"seq {record.seq} is not above {last}, the last accepted.")
    mapped = None
    if record.type == "evaluation":  # 8 unmapped_grade
        mapped = crosswalk.map_grade(str(record.scheme), str(record.grade), record.iss)
    return Accepted(index, record.jti, parsed.jws, record, digest, mapped, new=True)


def decide(
    partner: Partner,
    batch: object,
    state: InboxState,
    *,
    now: dt.datetime,
    crosswalk: Crosswalk,
    max_batch: int = MAX_BATCH,
    max_skew: int = MAX_FUTURE_SKEW,
) -> InboxResult:
    """Judge every record of a batch from `partner`; raise only for the batch as a whole."""
    records = check_batch(batch, max_batch)
    known = dict(state.known)
    last_seq = dict(state.last_seq)
    outcomes: list[Accepted | Rejected] = []
    for index, item in enumerate(records):
        try:
            outcome = _judge(partner, item, index, known, last_seq, now, crosswalk, max_skew)
        except RecordRejected as err:
            outcomes.append(Rejected.of(index, peek_jti(item), err))
            continue
        if outcome.new:
            known[outcome.jti] = outcome.digest
            last_seq[outcome.record.iss] = outcome.record.seq
        outcomes.append(outcome)
    return InboxResult(partner=partner.region, outcomes=outcomes)


def batch_jtis(batch: Sequence[object]) -> list[str]:
    """The jtis a batch claims (unverified): what the store must look up for `decide`."""
    return [jti for jti in (peek_jti(item) for item in batch) if jti is not None]
