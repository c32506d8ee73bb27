"""Errors of the cross-region exchange, drawn once.

    credcore.errors.VerificationError
    └── RecordRejected            one record of a batch is refused; `code` is the wire value
        ├── InvalidRecord         invalid_record   (not a JWS, bad header or payload)
        ├── WrongIssuer           wrong_issuer     (iss is not the sender, or a type not allowed)
        ├── UnknownKey            unknown_key      (no key with that kid valid at iat)
        ├── BadSignature          bad_signature
        ├── Expired               expired          (valid_until before today, CST)
        ├── Replay                replay           (jti already used for a different record)
        ├── StaleSeq              stale_seq        (seq not above the last accepted)
        └── UnmappedGrade         unmapped_grade   (no crosswalk for the scheme and grade)
    credcore.errors.RequestTooLarge
    └── BatchTooLarge             a whole batch over the limit (the batch, not a record, fails)
    credcore.errors.BadRequest
    └── MalformedBatch            the batch is not a list of records
    credcore.errors.Forbidden
    └── UnknownPartner            the caller is not a registered partner region
    credcore.errors.UpstreamError
    └── SyncFailed                a partner's outbox or inbox could not be used; cursor kept
    credcore.errors.ConfigError
    └── CrosswalkError            a crosswalk table is malformed
    ValueError
    └── PartnerGarbage            a partner's answer is not what the contract says (retried)
        └── PartnerHTTPError      a partner answered an HTTP error status (retried if transient)

A `RecordRejected` never escapes a batch: the inbox turns it into one entry of `rejected`, so
one bad record never rejects the others. The order in which the checks run is the contract's
(CONTRACTS.md section 6) and lives in `crosstab.inbox`, nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from credcore.errors import (
    BadRequest,
    ConfigError,
    Forbidden,
    RequestTooLarge,
    UpstreamError,
    VerificationError,
)

if TYPE_CHECKING:
    from crosstab.exchange import SyncReport


class RecordRejected(VerificationError):
    """A record fails one check; subclasses carry the contract's rejection code."""

    code = "invalid_record"
    status = 400


class InvalidRecord(RecordRejected):
    code = "invalid_record"


class WrongIssuer(RecordRejected):
    code = "wrong_issuer"


class UnknownKey(RecordRejected):
    code = "unknown_key"


class BadSignature(RecordRejected):
    code = "bad_signature"


class Expired(RecordRejected):
    code = "expired"


class Replay(RecordRejected):
    code = "replay"


class StaleSeq(RecordRejected):
    code = "stale_seq"


class UnmappedGrade(RecordRejected):
    code = "unmapped_grade"


# The contract's order: the first failing check names the rejection.
REJECTION_ORDER: tuple[str, ...] = (
    InvalidRecord.code,
    WrongIssuer.code,
    UnknownKey.code,
    BadSignature.code,
    Expired.code,
    Replay.code,
    StaleSeq.code,
    UnmappedGrade.code,
)


class BatchTooLarge(RequestTooLarge):
    """The batch holds more records than the limit; nothing in it is looked at."""


class MalformedBatch(BadRequest):
    """The batch is not a list (the records themselves are judged one by one)."""


class UnknownPartner(Forbidden):
    """The authenticated caller names a region that is not in the trust registry."""


class SyncFailed(UpstreamError):
    """A sync could not finish; `report` says how far it got (the cursor stays there)."""

    def __init__(self, description: str, *, report: SyncReport | None = None) -> None:
        super().__init__(description)
        self.report = report


class CrosswalkError(ConfigError):
    """A crosswalk table file is malformed; the message names the file."""


class PartnerGarbage(ValueError):
    """A partner's answer is unusable: not JSON, too big, or not in the contract's shape.

    Worth another attempt (a proxy's error page, a transfer cut short), unlike a ValueError
    from our own code, which `RetryPolicy` raises at once. A ValueError so that code which
    reads an answer and catches ValueError keeps working."""


class PartnerHTTPError(PartnerGarbage):
    """The partner answered with an HTTP error status; only some are worth retrying."""

    # 401: our token expired or was revoked (the retry asks for a new one); 408 and 429: ask
    # again later; 5xx: the partner or a proxy in front of it is failing. Any other 4xx is the
    # partner's considered refusal and would be answered the same way again.
    RETRYABLE = frozenset({401, 408, 429})

    def __init__(self, url: str, status: int, excerpt: str) -> None:
        super().__init__(f"{url} answered {status}: {excerpt}")
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status >= 500 or self.status in self.RETRYABLE
