"""authlib's grant, client authentication, token generator and endpoints, fitted to credgate.

Everything here runs inside authlib's synchronous flow on a worker thread (see server.py);
what needs the database goes through `server.call(...)`, which runs a coroutine on the
event loop and waits for it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from credcore.clock import Clock

from .keys import ACCESS_TOKEN_ALG, PinnedJWSRegistry, SigningKey
from .models import AUTH_METHODS, PRIVATE_KEY_JWT, IssuedToken, OAuthClient
from .verifier import SKEW

if TYPE_CHECKING:
    from .server import CredgateAuthorizationServer

# Client assertion algorithms (RFC 7523): asymmetric only, as the client registers a JWKS.
ASSERTION_ALGS = ("EdDSA", "ES256", "RS256", "PS256")
ASSERTION_REGISTRY = PinnedJWSRegistry(ASSERTION_ALGS)
# A jti is remembered until its assertion expires; refuse assertions that would pin one
# for longer than an hour (authlib's own client signs for exactly an hour).
MAX_ASSERTION_LIFETIME = 3600 + SKEW
MAX_JTI_LENGTH = 255
# A client whose registered scope holds this may introspect any client's tokens.
INTROSPECT_ANY_SCOPE = "admin"


class CredgateClientCredentialsGrant(ClientCredentialsGrant):
    """RFC 6749 §4.4 with our three client authentication methods."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_requested_scope(self) -> None:
        # authlib checks only the server-wide scopes_supported; a client may also never
        # ask for more than it was registered with.
        super().validate_requested_scope()
        if self.request.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError()


class PrivateKeyJWT(JWTBearerClientAssertion):
    """`private_key_jwt` (RFC 7523 §2.2): the client signs an assertion with a registered key."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, server: CredgateAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=SKEW)
        self.server = server

    def get_audiences(self) -> list[str]:
        # RFC 7523 §3 item 3: the token endpoint URL; the issuer identifier also names us
        # (and is what the draft update of RFC 7523 recommends).
        return [self.server.token_endpoint, self.server.issuer]

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        keys = client.public_keys()
        if keys is None:
            raise InvalidClientError(description="The client has no registered keys.")
        return keys

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # authlib leaves the algorithm choice to joserfc's defaults; pin the allow-list.
        try:
            token = jwt.decode(assertion, resolve_key, registry=ASSERTION_REGISTRY)
        except JoseError as exc:
            raise InvalidClientError(description="The client assertion is invalid.") from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            now=int(self.server.clock.time()),
            leeway=self.leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "values": self.get_audiences()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidClientError(description="The client assertion is invalid.") from exc
        if claims["sub"] != claims["iss"]:
            raise InvalidClientError(description="Issuer and Subject MUST match.")
        if claims["exp"] > self.server.clock.time() + MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The client assertion lives too long.")
        if not self.validate_jti(claims, claims["jti"]):
            raise InvalidClientError(description="The client assertion was used before.")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        if len(jti) > MAX_JTI_LENGTH:
            return False
        backend = self.server.backend
        return self.server.call(backend.use_assertion_jti(claims["sub"], jti, int(claims["exp"])))


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 access tokens, signed with our Ed25519 key and timed by the injected clock."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        key: SigningKey,
        clock: Clock,
        token_bytes: Callable[[int], bytes],
        lifetime: int,
    ) -> None:
        super().__init__(issuer=issuer, alg=ACCESS_TOKEN_ALG, expires_generator=lifetime)
        self.audience = audience
        self.key = key
        self.clock = clock
        self.token_bytes = token_bytes
        self.lifetime = lifetime

    def get_jti(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        return base64.urlsafe_b64encode(self.token_bytes(16)).rstrip(b"=").decode("ascii")

    def access_token_generator(
        self, client: OAuthClient, grant_type: str, user: Any, scope: str
    ) -> str:
        now = int(self.clock.time())
        # A token issued in the same second as revoke_all_tokens() must outlive it, and
        # revoked_before is compared with iat (<=): so iat is at least revoked_before + 1,
        # at most a second in the future, well within every verifier's skew.
        revoked_before = client.info.revoked_before
        iat = now if revoked_before is None else max(now, revoked_before + 1)
        client_id = client.get_client_id()
        claims = {
            "iss": self.issuer,
            "sub": client_id,  # RFC 9068 §2.2: the client itself, in a client credentials grant
            "aud": self.audience,
            "client_id": client_id,
            "scope": scope,
            "jti": self.get_jti(client, grant_type, user, scope),
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.lifetime,
        }
        return self.key.sign({"typ": "at+jwt"}, claims)


def _require_token(request: Any) -> None:
    # authlib refuses an unknown token_type_hint (with a 401); RFC 7009 §2.1 and RFC 7662
    # §2.1 say a hint that does not help means searching every token type. We have one.
    if not request.form.get("token"):
        raise InvalidRequestError("Missing token.")


class CredgateIntrospectionEndpoint(IntrospectionEndpoint):
    """RFC 7662: active only for our valid, unrevoked tokens the caller may see."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def check_params(self, request: Any, client: OAuthClient) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        claims = self.server.call(self.server.backend.verify_token(token_string))
        return None if claims is None else IssuedToken(claims)

    def check_permission(self, token: IssuedToken, client: OAuthClient, request: Any) -> bool:
        # A client sees its own tokens; only an administrator may probe other clients'.
        return token.check_client(client) or INTROSPECT_ANY_SCOPE in client.info.scope

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        raw = token.claims.raw
        payload = {"active": True, "token_type": "Bearer"}
        for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"):
            if name in raw:
                payload[name] = raw[name]
        return payload


class CredgateRevocationEndpoint(RevocationEndpoint):
    """RFC 7009 for JWT access tokens, through the jti deny-list.

    authlib's own JWT revocation endpoint refuses to revoke JWTs; self-contained tokens
    stay valid until they expire unless every verifier consults a deny-list, which ours do.
    Unknown, expired and already revoked tokens answer 200 (RFC 7009 §2.2); a token of
    another client is refused with `invalid_grant` (§2.1) and stays valid.
    """

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def check_params(self, request: Any, client: OAuthClient) -> None:
        _require_token(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        claims = self.server.call(self.server.backend.verify_token(token_string))
        return None if claims is None else IssuedToken(claims)

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        self.server.call(self.server.backend.revoke(token.claims))
