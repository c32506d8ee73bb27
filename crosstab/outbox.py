"""Our region's outbox: the records we publish to partners, signed, in strictly increasing seq.

Issuing takes the next seq and stores the signed record in one transaction (`store.issue`), so
the published sequence has no holes that a puller could skip past and no seq used twice. A draft
is validated by the same parser partners use (`records.parse_payload`): we never publish what a
partner must refuse as invalid_record.

The cross-border rule lives here and only here: a record marked domestic-only is served only
to a partner that `DomesticPolicy.is_domestic` accepts (registered as domestic *and* in the
configured domestic region set). The filter runs in the page query itself, so such a record is
never in memory on the way to a partner abroad. A revocation of a domestic-only record is
itself domestic-only: it names the same company and would tell a partner abroad it existed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey

from credcore.clock import Clock
from credcore.errors import InvalidParameter
from crosstab import _jose
from crosstab.records import LIST_TYPES, MAX_BATCH, Record, parse_payload, sign_record
from crosstab.store import CrosstabStore, IssuedRow
from crosstab.trust import DomesticPolicy, Partner

DEFAULT_PAGE = 100


@dataclass(frozen=True)
class Draft:
    """A record to publish, before it has an issuer, jti, iat and seq."""

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
    domestic_only: bool = False


def evaluation(
    sub: str, scheme: str, grade: str, valid_from: dt.date, valid_until: dt.date, **extra: Any
) -> Draft:
    """An evaluation (a grade under a scheme, valid for a period)."""
    return Draft(
        "evaluation",
        sub,
        scheme=scheme,
        grade=grade,
        valid_from=valid_from,
        valid_until=valid_until,
        **extra,
    )


def joint_entry(
    kind: str, sub: str, list_name: str, decision_number: str, valid_from: dt.date, **extra: Any
) -> Draft:
    """An entry of a joint reward or joint punishment list."""
    if kind not in LIST_TYPES:
        raise ValueError("kind is joint_reward or joint_punishment")
    return Draft(
        kind,
        sub,
        list_name=list_name,
        decision_number=decision_number,
        valid_from=valid_from,
        **extra,
    )


def revocation(sub: str, revokes: str, **extra: Any) -> Draft:
    """A revocation of one of our earlier records."""
    return Draft("revocation", sub, revokes=revokes, **extra)


@dataclass(frozen=True)
class Signer:
    """Our region's current signing key."""

    region: str
    kid: str
    key: OKPKey
    alg: str = "EdDSA"

    @classmethod
    def from_jwk(
        cls, region: str, kid: str, jwk: OKPKey | dict[str, Any], alg: str = "EdDSA"
    ) -> Signer:
        if alg not in _jose.ALGORITHMS:
            raise ValueError("alg is EdDSA or Ed25519")
        return cls(region=region, kid=kid, key=_jose.import_private_key(jwk), alg=alg)

    def sign(self, record: Record) -> str:
        return sign_record(record, self.key, self.kid, alg=self.alg)

    def public_jwk(self) -> dict[str, Any]:
        return _jose.public_jwk(self.key, self.kid, self.alg)


@dataclass(frozen=True)
class IssuedRecord:
    seq: int
    jti: str
    jws: str
    record: Record
    domestic_only: bool


@dataclass(frozen=True)
class OutboxPage:
    """The contract's answer to `GET /crosstab/v1/outbox?after=SEQ&limit=N`."""

    records: list[str]
    next: int

    def body(self) -> dict[str, Any]:
        return {"records": list(self.records), "next": self.next}


def page_limit(limit: int | None) -> int:
    """The page size to use: default when absent, at most a batch, at least one."""
    if limit is None:
        return DEFAULT_PAGE
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParameter("limit", "limit must be a positive integer.")
    return min(limit, MAX_BATCH)


def default_jti() -> str:
    return secrets.token_urlsafe(18)


class Outbox:
    def __init__(
        self,
        store: CrosstabStore,
        signer: Signer,
        clock: Clock,
        *,
        domestic: DomesticPolicy,
        new_jti: Callable[[], str] = default_jti,
    ) -> None:
        self.store = store
        self.signer = signer
        self.clock = clock
        self.domestic = domestic
        self.new_jti = new_jti

    async def issue(self, draft: Draft, jti: str | None = None) -> IssuedRecord:
        """Sign and publish a draft under the next seq (`jti`: a caller's stable id, so that
        publishing the same source record twice fails on the unique jti instead)."""
        domestic_only = draft.domestic_only
        if draft.type == "revocation" and draft.revokes is not None:
            target = await self.store.issued_domestic_only(draft.revokes)
            domestic_only = domestic_only or bool(target)
        jti = jti if jti is not None else self.new_jti()
        iat = int(self.clock.time())
        made: list[tuple[Record, str]] = []

        def build(seq: int) -> IssuedRow:
            payload: dict[str, Any] = {
                "iss": self.signer.region,
                "jti": jti,
                "iat": iat,
                "seq": seq,
            }
            for name, value in vars(draft).items():
                if name != "domestic_only" and value is not None:
                    payload[name] = value.isoformat() if isinstance(value, dt.date) else value
            record = parse_payload(payload)  # raises InvalidRecord: nothing is stored
            made.append((record, self.signer.sign(record)))
            return IssuedRow(jti, record.type, record.sub, domestic_only, made[-1][1])

        seq = await self.store.issue(build, self.clock.now())
        record, jws = made[-1]  # build ran, or issue raised
        return IssuedRecord(seq, jti, jws, record, domestic_only)

    async def page(self, partner: Partner, after: int, limit: int | None = None) -> OutboxPage:
        """Our records after `after` that this partner may see, in seq order."""
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidParameter("after", "after must be a non-negative integer.")
        rows = await self.store.issued_page(
            after,
            page_limit(limit),
            include_domestic_only=self.domestic.is_domestic(partner),
        )
        return OutboxPage(records=[jws for _, jws in rows], next=rows[-1][0] if rows else after)
