"""`OAuthService`: the authorization server's public face for the rest of the gateway.

It owns the store, the signing keys, the in-memory revocation state and the verifier, and
wires authlib's server (server.py, grants.py) to them. The gateway calls `start()` once,
mounts `routes()`, verifies every request with `verifier().verify(token)` and polls
`refresh_revocations()` so revocations made by other processes reach this one.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from sqlalchemy.ext.asyncio import AsyncEngine

from credcore.clock import Clock, SystemClock
from credcore.errors import ConfigError, InvalidParameter, InvalidToken, ServiceUnavailable

from .grants import (
    ASSERTION_ALGS,
    AccessTokenGenerator,
    CredgateClientCredentialsGrant,
    CredgateIntrospectionEndpoint,
    CredgateRevocationEndpoint,
    PrivateKeyJWT,
)
from .keys import SigningKey, jwks
from .models import (
    AUTH_METHODS,
    CLIENT_CREDENTIALS,
    PRIVATE_KEY_JWT,
    SECRET_METHODS,
    STATUSES,
    ClientInfo,
    OAuthClient,
)
from .registration import (
    check_auth_methods,
    check_client_id,
    check_issuer,
    check_name,
    check_public_jwks,
    check_scope,
)
from .secret_hash import VerifiedSecrets, hash_secret
from .server import CredgateAuthorizationServer, OAuthHandlers
from .store import ClientRecord, OAuthStore
from .verifier import SKEW, AccessClaims, RevocationList, TokenVerifier

MAX_TOKEN_LIFETIME = 600  # seconds; issue 2: access tokens live at most ten minutes
_PURGE_INTERVAL = 60.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _Backend:
    """The coroutines authlib's hooks run on the event loop (server.OAuthBackend)."""

    def __init__(self, service: OAuthService) -> None:
        self._service = service

    async def load_client(self, client_id: str) -> OAuthClient | None:
        record = await self._service._store.get_client(client_id)
        if record is None:
            return None
        return OAuthClient(record.info, record.secret_hash, self._service._secrets)

    async def use_assertion_jti(self, client_id: str, jti: str, exp: int) -> bool:
        return await self._service._store.use_assertion_jti(client_id, jti, exp)

    async def verify_token(self, token: str) -> AccessClaims | None:
        try:
            return self._service.verifier().verify(token)
        except InvalidToken:
            return None

    async def revoke(self, claims: AccessClaims) -> None:
        now = self._service._clock.now()
        await self._service._store.deny_jti(claims.jti, claims.client_id, claims.exp, now)
        self._service._revocations.deny(claims.jti, claims.exp)


class OAuthService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        issuer: str,
        audience: str,
        clock: Clock = SystemClock(),  # noqa: B008 - stateless, safe to share
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        token_lifetime: int = 300,
        scopes_supported: Sequence[str] = (),
    ) -> None:
        if not audience:
            raise ConfigError("audience: the gateway's resource identifier must be set")
        if not 1 <= token_lifetime <= MAX_TOKEN_LIFETIME:
            raise ConfigError(f"token_lifetime: must be 1..{MAX_TOKEN_LIFETIME} seconds")
        self.issuer = issuer
        self.audience = audience
        self.token_lifetime = token_lifetime
        self.scopes_supported = tuple(scopes_supported)
        self._store = OAuthStore(engine)
        self._clock = clock
        self._token_bytes = token_bytes
        self._secrets = VerifiedSecrets()
        self._revocations = RevocationList()
        self._keys: list[SigningKey] = []
        self._verifier: TokenVerifier | None = None
        self._handlers: OAuthHandlers | None = None
        self._last_purge: float | None = None
        self._routes: list[web.RouteDef] | None = None
        base = issuer.rstrip("/")
        self.token_endpoint = base + "/oauth/token"
        self._metadata = AuthorizationServerMetadata(
            issuer=issuer,
            token_endpoint=self.token_endpoint,
            jwks_uri=base + "/.well-known/jwks.json",
            introspection_endpoint=base + "/oauth/introspect",
            revocation_endpoint=base + "/oauth/revoke",
            grant_types_supported=[CLIENT_CREDENTIALS],
            # RFC 8414 §2 calls this REQUIRED; no response type is, as there is no
            # authorization endpoint, and an empty list says so.
            response_types_supported=[],
            token_endpoint_auth_methods_supported=list(AUTH_METHODS),
            token_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGS),
            introspection_endpoint_auth_methods_supported=list(AUTH_METHODS),
            introspection_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGS),
            revocation_endpoint_auth_methods_supported=list(AUTH_METHODS),
            revocation_endpoint_auth_signing_alg_values_supported=list(ASSERTION_ALGS),
        )
        if self.scopes_supported:
            self._metadata["scopes_supported"] = list(self.scopes_supported)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the tables if missing and load the signing keys, creating one at first start."""
        await self._store.create_tables()
        keys = await self._store.active_keys()
        if not keys:
            await self._store.add_key(SigningKey.generate(), self._clock.now())
            # Re-read: if another process created one at the same moment, both use the oldest.
            keys = await self._store.active_keys()
        self._keys = keys
        self._verifier = TokenVerifier(
            issuer=self.issuer,
            audience=self.audience,
            keys={key.kid: key for key in keys},
            revocations=self._revocations,
            clock=self._clock,
        )
        server = CredgateAuthorizationServer(
            _Backend(self),
            issuer=self.issuer,
            clock=self._clock,
            scopes_supported=list(self.scopes_supported) or None,
        )
        server.register_grant(CredgateClientCredentialsGrant)
        server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJWT(server))
        server.register_token_generator(
            "default",
            AccessTokenGenerator(
                issuer=self.issuer,
                audience=self.audience,
                key=keys[0],
                clock=self._clock,
                token_bytes=self._token_bytes,
                lifetime=self.token_lifetime,
            ),
        )
        server.register_endpoint(CredgateIntrospectionEndpoint)
        server.register_endpoint(CredgateRevocationEndpoint)
        self._handlers = OAuthHandlers(server)
        await self.refresh_revocations()

    def routes(self) -> list[web.RouteDef]:
        """The five endpoints; safe to mount before `start()` (they answer 503 until then).

        Serving them needs an issuer that is a real https (or loopback http) origin; a
        service used only offline (admin commands on the database) may have any issuer.
        """
        if self._routes is None:
            check_issuer(self.issuer)
            self._routes = [
                web.post("/oauth/token", self._token),
                web.post("/oauth/introspect", self._introspect),
                web.post("/oauth/revoke", self._revoke),
                web.get("/.well-known/oauth-authorization-server", self._metadata_document),
                web.get("/.well-known/jwks.json", self._jwks_document),
            ]
        return self._routes

    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise RuntimeError("OAuthService.start() has not run")
        return self._verifier

    # --- clients ---------------------------------------------------------------------------

    async def create_client(
        self,
        *,
        name: str,
        scope: str,
        client_id: str | None = None,
        client_secret: str | None = None,
        jwks: dict[str, Any] | None = None,
        auth_methods: Sequence[str] = ("client_secret_basic", "client_secret_post"),
    ) -> tuple[str, str | None]:
        """Register a client; returns its id and its secret (None without a secret method)."""
        methods = check_auth_methods(auth_methods)
        scopes = check_scope(scope, self.scopes_supported)
        check_name(name)
        if client_id is None:
            client_id = "cg-" + self._token_bytes(12).hex()  # never starts with "-", safe on a command line
        check_client_id(client_id)
        if jwks is not None:
            check_public_jwks(jwks)
        elif PRIVATE_KEY_JWT in methods:
            raise InvalidParameter("jwks", "private_key_jwt needs the client's public JWK Set.")
        secret_hash = None
        if any(method in SECRET_METHODS for method in methods):
            if client_secret is None:
                client_secret = _b64(self._token_bytes(32))
            elif not 0 < len(client_secret) <= 256:
                raise InvalidParameter("client_secret", "A secret is 1 to 256 characters.")
            secret_hash = await asyncio.to_thread(hash_secret, client_secret, self._token_bytes)
        elif client_secret is not None:
            raise InvalidParameter("client_secret", "None of the client's methods uses a secret.")
        info = ClientInfo(
            client_id=client_id,
            name=name,
            scope=scopes,
            auth_methods=methods,
            status="active",
            created_at=self._clock.now(),
            jwks=jwks,
            revoked_before=None,
        )
        await self._store.insert_client(ClientRecord(info=info, secret_hash=secret_hash))
        return client_id, client_secret

    async def get_client(self, client_id: str) -> ClientInfo | None:
        record = await self._store.get_client(client_id)
        return None if record is None else record.info

    async def set_client_status(self, client_id: str, status: str) -> None:
        """`active` or `suspended`; a suspended client fails client authentication."""
        if status not in STATUSES:
            raise InvalidParameter("status", f"A client status is one of {', '.join(STATUSES)}.")
        await self._store.set_status(client_id, status)

    # --- revocation --------------------------------------------------------------------------

    async def revoke_all_tokens(self, client_id: str) -> None:
        """Revoke every token issued to the client until now (its `revoked_before`)."""
        when = await self._store.raise_revoked_before(client_id, int(self._clock.time()))
        self._revocations.revoke_before(client_id, when)

    async def refresh_revocations(self) -> None:
        """Merge the database's revocations into memory (other processes' included)."""
        now = self._clock.time()
        denied, before = await self._store.load_revocations(int(now) - SKEW)
        self._revocations.merge(denied, before, live_after=int(now) - SKEW)
        if self._last_purge is None or now - self._last_purge >= _PURGE_INTERVAL:
            self._last_purge = now
            await self._store.purge_expired(int(now) - SKEW)

    @property
    def revocation_version(self) -> int:
        """Changes whenever the in-memory revocation state changes."""
        return self._revocations.version

    # --- handlers ----------------------------------------------------------------------------

    def _started(self) -> OAuthHandlers:
        if self._handlers is None:
            raise ServiceUnavailable("The authorization server is starting.")
        return self._handlers

    async def _token(self, request: web.Request) -> web.Response:
        return await self._started().token(request)

    async def _introspect(self, request: web.Request) -> web.Response:
        return await self._started().introspect(request)

    async def _revoke(self, request: web.Request) -> web.Response:
        return await self._started().revoke(request)

    async def _metadata_document(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self._metadata), headers={"Cache-Control": "max-age=300"})

    async def _jwks_document(self, request: web.Request) -> web.Response:
        self._started()
        return web.json_response(jwks(self._keys), headers={"Cache-Control": "max-age=300"})
