"""The shared objects of one gateway process, under typed application keys."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.checkpointer import Checkpointer
from audit.writer import AuditWriter
from credcore.clock import Clock
from gateway.config import Settings
from gateway.filtering import ReleaseMemo
from gateway.licensing import Licensing
from gateway.oauth import AccessClaims, OAuthService
from gateway.release import AccessRecord
from gateway.tracing import Tracing
from gateway.upstream import Upstream
from policies.store import LicenceStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    oauth: OAuthService
    licence_store: LicenceStore
    licensing: Licensing
    upstream: Upstream
    audit: AuditWriter
    checkpointer: Checkpointer
    tracer: Tracer
    tracing: Tracing
    tracer_provider: TracerProvider
    recognitions: Callable[[str], Awaitable[Any]]
    # Called with each /v1 request's record and final status once it is answered (for
    # over-scope detection and metrics); an observer must not raise.
    release_memo: ReleaseMemo = field(default_factory=ReleaseMemo)
    access_observers: list[Callable[[AccessRecord, int], None]] = field(default_factory=list)

    def observe(self, record: AccessRecord, status: int) -> None:
        for observer in self.access_observers:
            try:
                observer(record, status)
            except Exception:  # the answer is already decided and audited; an observer cannot undo it
                log.exception("access observer %r failed", observer)

    def verify_token(self, token: str, record: AccessRecord | None = None) -> AccessClaims:
        """A valid token of a suspended operator is refused as suspended (403), not revoked (401);
        `record` learns the operator first, so that refusal is on the record under its name."""

        def before_revocation(claims: AccessClaims) -> None:
            if record is not None:
                record.client_id = claims.client_id
            self.licensing.check_suspension(claims.client_id)

        return self.oauth.verifier().verify(token, before_revocation=before_revocation)


GATEWAY = web.AppKey("gateway", Services)
ACCESS = web.RequestKey("credgate.access", AccessRecord)  # the AccessRecord of an audited request
SPAN = web.RequestKey("credgate.span", trace.Span)  # the request's (server) span
__all__ = ["ACCESS", "GATEWAY", "SPAN", "AccessRecord", "Services"]
