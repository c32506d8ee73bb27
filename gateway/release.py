"""No audit, no data.

This module is the only place that answers a /v1 request, allowed or denied. Rules:
1. The audit entry is built from what is about to be released (status, fields, a SHA-256 of
   the exact body bytes) and appended first; the response exists only after `append` has
   returned the entry's index, i.e. after the entry is durable.
2. If the append fails, the answer is 503 `audit_unavailable` with no data and no
   `Audit-Entry` (there is no entry to point at).
3. An operator that disconnects mid-request may cancel its handler, but never its audit entry:
   the entry is queued before the handler waits, and the writer records every queued entry
   whether or not anyone still waits for it, so no request is left half-recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from credcore.clock import Clock, rfc3339
from credcore.errors import AuditUnavailable, CredgateError


class AuditSink(Protocol):
    async def append(self, entry: dict[str, Any]) -> int: ...


class ReleaseSink(Protocol):
    """What `release` needs of the audit writer (audit/writer.py): queue an entry, get a future
    that resolves to its index once the entry is durable. The entry is recorded even if the
    future is cancelled."""

    def enqueue(self, entry: dict[str, Any]) -> asyncio.Future[int]: ...


@dataclass
class AccessRecord:
    """What the audit entry of one /v1 request says; filled in stage by stage."""

    method: str
    path: str
    query: str
    purpose: str | None = None
    purpose_declared: bool = True
    client_id: str | None = None
    uscc: list[str] = field(default_factory=list)
    dataset: str | None = None
    decision: str = "deny"
    reason: str = ""
    licence: str | None = None
    rule: list[str] | None = None
    fields: list[str] = field(default_factory=list)
    stripped: list[str] = field(default_factory=list)
    records: list[dict[str, str]] = field(default_factory=list)
    trace_id: str | None = None

    def entry(self, *, time: str, status: int, body: bytes | None, error: str | None,
              body_sha256: str | None = None) -> dict[str, Any]:
        """The audit entry; `body_sha256` is the body's digest when the caller has it already."""
        if body_sha256 is None and body:
            body_sha256 = hashlib.sha256(body).hexdigest()
        return {
            "kind": "access",
            "time": time,
            "client_id": self.client_id,
            "request": {"method": self.method, "path": self.path, "query": self.query, "purpose": self.purpose,
                        "purpose_declared": self.purpose_declared},
            "uscc": self.uscc,
            "dataset": self.dataset,
            "decision": self.decision,
            "reason": self.reason,
            "licence": self.licence,
            "rule": self.rule,
            "status": status,
            "error": error,
            "fields": self.fields,
            "stripped": self.stripped,
            "records": self.records,
            "body_sha256": body_sha256,
            "trace_id": self.trace_id,
        }


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_NOT_RFC6750 = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def error_headers(error: CredgateError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if error.status == 401 or error.code == "insufficient_scope":
        # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E only. A description may
        # echo what a client sent (a token's alg), so anything else is replaced, never reflected.
        description = _NOT_RFC6750.sub("?", error.description.replace('"', "'"))[:200]
        headers["WWW-Authenticate"] = f'Bearer error="{error.code}", error_description="{description}"'
    allow = getattr(error, "allow", None)
    if allow:
        headers["Allow"] = allow
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def error_response(error: CredgateError, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=error.status, body=json_bytes(error.body()), content_type="application/json",
        headers={**error_headers(error), **(headers or {})},
    )


async def release(
    sink: ReleaseSink, clock: Clock, record: AccessRecord, *, status: int, body: bytes,
    headers: Mapping[str, str] | None = None, error: CredgateError | None = None, body_sha256: str | None = None,
) -> web.Response:
    """Append the entry, and only then build the response that carries it. `body_sha256`: the
    body's digest, from the memo that made the body (else computed here)."""
    if error is None:
        record.decision = "allow"
    else:
        record.decision = "deny" if error.status < 500 else "error"
        record.reason = error.description  # e.g. the quota refusal, not the licence that allowed it
        record.fields, record.records = [], []
    entry = record.entry(time=rfc3339(clock.now()), status=status, body=body,
                         error=error.code if error else None, body_sha256=None if error else body_sha256)
    try:
        index = await sink.enqueue(entry)  # cancelling this wait leaves the entry queued (rule 3)
    except AuditUnavailable as exc:
        return error_response(exc)
    out = dict(headers or {})
    out["Audit-Entry"] = str(index)
    return web.Response(status=status, body=body, content_type="application/json", headers=out)


async def release_error(sink: ReleaseSink, clock: Clock, record: AccessRecord, error: CredgateError) -> web.Response:
    return await release(
        sink, clock, record, status=error.status, body=json_bytes(error.body()),
        headers=error_headers(error), error=error,
    )
