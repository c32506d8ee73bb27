"""Bearer-token checks for the non-/v1 endpoints (audit, admin, crosstab)."""

from __future__ import annotations

from aiohttp import web

from credcore.errors import Forbidden
from gateway.oauth import AccessClaims
from gateway.pipeline import bearer_token
from gateway.services import GATEWAY


def require_scope(request: web.Request, scope: str) -> AccessClaims:
    claims = request.app[GATEWAY].verify_token(bearer_token(request))
    if scope not in claims.scope:
        raise Forbidden(f"The access token lacks the '{scope}' scope.")
    return claims
