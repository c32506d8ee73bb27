"""What an operator sees of a received record: `GET /v1/entities/{uscc}/recognitions`.

A recognition is a received evaluation or joint reward/punishment entry, shown with its origin
region, the grade as the partner gave it and as it maps here, its validity and whether it was
revoked. Revocations themselves are not recognitions; they show as `revoked` on their target.
The original JWS goes with it so that the reader can verify the partner's signature without
trusting us (`crosstab.records.verify_record` with the key from the partner's jwks.json).

Two shapes. `to_json` is the full view (nested grades, status, the JWS). `to_record` is the
data set served at `/v1/entities/{uscc}/recognitions`: flat, with exactly the field names of
`policies.catalogue.RECOGNITION`, so that a licence's field list applies to it like to any
other data set (the gateway strips anything else).

Status, first that applies: `revoked`; `expired` (valid_until before today, CST);
`not_yet_valid` (valid_from after today); `valid`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Recognition:
    origin_region: str
    origin_name: str | None  # None when the partner has since been removed
    jti: str
    seq: int
    type: str
    sub: str
    subject_name: str | None
    scheme: str | None
    grade: str | None
    mapped_scheme: str | None
    mapped_grade: str | None
    list_name: str | None
    decision_number: str | None
    authority: str | None
    authority_uscc: str | None
    valid_from: dt.date | None
    valid_until: dt.date | None
    revoked: bool
    revoked_by: str | None
    issued_at: dt.datetime
    received_at: dt.datetime
    jws: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], received_at: dt.datetime) -> Recognition:
        return cls(
            origin_region=row["issuer"],
            origin_name=row["origin_name"],
            jti=row["jti"],
            seq=int(row["seq"]),
            type=row["type"],
            sub=row["sub"],
            subject_name=row["subject_name"],
            scheme=row["scheme"],
            grade=row["grade"],
            mapped_scheme=row["mapped_scheme"],
            mapped_grade=row["mapped_grade"],
            list_name=row["list_name"],
            decision_number=row["decision_number"],
            authority=row["authority"],
            authority_uscc=row["authority_uscc"],
            valid_from=row["valid_from"],
            valid_until=row["valid_until"],
            revoked=bool(row["revoked"]),
            revoked_by=row["revoked_by"],
            issued_at=dt.datetime.fromtimestamp(int(row["iat"]), dt.UTC),
            received_at=received_at,
            jws=row["jws"],
        )

    def status(self, today: dt.date) -> str:
        if self.revoked:
            return "revoked"
        if self.valid_until is not None and self.valid_until < today:
            return "expired"
        if self.valid_from is not None and self.valid_from > today:
            return "not_yet_valid"
        return "valid"

    def to_json(self, today: dt.date) -> dict[str, Any]:
        """The JSON object served to operators (field filtering is the gateway's)."""

        def day(value: dt.date | None) -> str | None:
            return value.isoformat() if value is not None else None

        def instant(value: dt.datetime) -> str:
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")

        return {
            "origin_region": self.origin_region,
            "origin_name": self.origin_name,
            "jti": self.jti,
            "type": self.type,
            "uscc": self.sub,
            "subject_name": self.subject_name,
            "original_grade": (
                {"scheme": self.scheme, "grade": self.grade} if self.scheme is not None else None
            ),
            "mapped_grade": (
                {"scheme": self.mapped_scheme, "grade": self.mapped_grade}
                if self.mapped_scheme is not None
                else None
            ),
            "list_name": self.list_name,
            "decision_number": self.decision_number,
            "authority": self.authority,
            "authority_uscc": self.authority_uscc,
            "valid_from": day(self.valid_from),
            "valid_until": day(self.valid_until),
            "status": self.status(today),
            "revoked": self.revoked,
            "revoked_by": self.revoked_by,
            "issued_at": instant(self.issued_at),
            "received_at": instant(self.received_at),
            "jws": self.jws,
        }

    def to_record(self, today: dt.date) -> dict[str, Any]:
        """The flat record of the `recognitions` data set (policies.catalogue.RECOGNITION names);
        `jws` lets an operator check the partner's signature itself."""
        return {
            "status": self.status(today),
            "origin_name": self.origin_name,
            "revoked_by": self.revoked_by,
            "issued_at": self.issued_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "jws": self.jws,
            "jti": self.jti,
            "origin_region": self.origin_region,
            "type": self.type,
            "uscc": self.sub,
            "subject_name": self.subject_name,
            "scheme": self.scheme,
            "grade": self.grade,
            "mapped_scheme": self.mapped_scheme,
            "mapped_grade": self.mapped_grade,
            "list_name": self.list_name,
            "decision_number": self.decision_number,
            "authority": self.authority,
            "authority_uscc": self.authority_uscc,
            "valid_from": self.valid_from.isoformat() if self.valid_from is not None else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until is not None else None,
            "revoked": self.revoked,
            "received_at": self.received_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
