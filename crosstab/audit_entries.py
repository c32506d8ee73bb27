"""The audit entry of one exchange with a partner (kind "crosstab"): pure.

Every exchange, in or out, accepted or rejected, is one entry: a partner's push to our inbox,
a partner's pull of our outbox, and each page of our own sync (pulled in, pushed out). The
entry has the members every audit entry has (CONTRACTS.md section 4: time, client_id, request,
uscc, decision and reason, status, fields, body digest) and says which partner, which way,
which records were accepted, refused (with the contract's code) or served. `uscc` lists the
subjects of every record concerned, readable or not yet verified, so that an audit search by
company finds the exchanges that named it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from crosstab.inbox import Rejected
from crosstab.records import peek_jti, peek_sub

Direction = Literal["in", "out"]


@dataclass
class ExchangeRecord:
    """What the audit entry of one exchange says; filled in as the exchange goes."""

    exchange: str  # push | pull (a partner's request) or sync_pull | sync_push (ours)
    direction: Direction
    method: str = ""
    path: str = ""
    query: str = ""
    client_id: str | None = None
    partner: str | None = None
    accepted: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    subjects: set[str] = field(default_factory=set)
    cursor: dict[str, int] | None = None
    fields: list[str] = field(default_factory=list)
    reason: str = ""

    def concern(self, records: Iterable[object]) -> None:
        """Note the subjects of records (unverified ones too; invalid codes are skipped)."""
        for item in records:
            sub = peek_sub(item)
            if sub is not None:
                self.subjects.add(sub)

    def judged(self, accepted: list[str], rejected: Iterable[Rejected]) -> None:
        self.accepted = list(accepted)
        self.rejected = [{"index": r.index, "jti": r.jti, "error": r.error} for r in rejected]

    def serve(self, records: list[str], after: int, nxt: int) -> None:
        self.served = [jti or "" for jti in (peek_jti(r) for r in records)]
        self.concern(records)
        self.cursor = {"after": after, "next": nxt}

    def decision(self, status: int) -> str:
        if status >= 500:
            return "error"
        if status >= 400 or (self.rejected and not self.accepted and not self.served):
            return "deny"
        return "allow"

    def entry(self, *, time: str, status: int, body: bytes | None, error: str | None) -> dict[str, Any]:
        decision = self.decision(status)
        reason = self.reason
        if not reason and decision == "allow":
            reason = f"{len(self.accepted)} accepted, {len(self.rejected)} rejected, {len(self.served)} served"
        elif not reason and decision == "deny" and self.rejected:
            reason = "every record was rejected"
        return {
            "kind": "crosstab",
            "time": time,
            "client_id": self.client_id,
            "request": {"method": self.method, "path": self.path, "query": self.query},
            "partner": self.partner,
            "exchange": self.exchange,
            "direction": self.direction,
            "uscc": sorted(self.subjects),
            "decision": decision,
            "reason": reason,
            "status": status,
            "error": error,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "served": self.served,
            "cursor": self.cursor,
            "fields": self.fields if decision == "allow" else [],
            "body_sha256": hashlib.sha256(body).hexdigest() if body else None,
        }
