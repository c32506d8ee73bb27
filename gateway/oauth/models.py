"""The client and token objects that authlib's grants and endpoints work with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from joserfc.jwk import KeySet

from .secret_hash import VerifiedSecrets
from .verifier import AccessClaims

CLIENT_CREDENTIALS = "client_credentials"
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (*SECRET_METHODS, PRIVATE_KEY_JWT)
STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class ClientInfo:
    """A registered client as the rest of the gateway sees it (never its secret)."""

    client_id: str
    name: str
    scope: frozenset[str]
    auth_methods: tuple[str, ...]
    status: str
    created_at: dt.datetime
    jwks: dict[str, Any] | None
    revoked_before: int | None


class OAuthClient(ClientMixin):
    """A client row, as authlib's `ClientMixin`, for the duration of one request."""

    def __init__(self, info: ClientInfo, secret_hash: str | None, secrets: VerifiedSecrets):
        self.info = info
        self._secret_hash = secret_hash
        self._secrets = secrets

    def get_client_id(self) -> str:
        return self.info.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == CLIENT_CREDENTIALS

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The granted scope: the request's if it is within the registration, else None.

        RFC 6749 §3.3 lets the server default an omitted scope; ours is the whole
        registered scope. A request that asks for more gets `invalid_scope`.
        """
        registered = self.info.scope
        if not scope or not scope.strip():
            return " ".join(sorted(registered))
        requested = list(dict.fromkeys(scope.split()))  # de-duplicated, order kept
        if not set(requested) <= registered:
            return None
        return " ".join(requested)

    def check_client_secret(self, client_secret: str) -> bool:
        if self._secret_hash is None:
            return False
        return self._secrets.check(self.info.client_id, client_secret, self._secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # The same methods authenticate the client at the token, introspection and
        # revocation endpoints; "none" (public clients) is never one of them.
        return self.info.status == "active" and method in self.info.auth_methods

    def public_keys(self) -> KeySet | None:
        if not self.info.jwks:
            return None
        return KeySet.import_key_set(self.info.jwks)  # type: ignore[arg-type]


class IssuedToken(TokenMixin):
    """A verified access token, as authlib's `TokenMixin`, for introspection and revocation."""

    def __init__(self, claims: AccessClaims) -> None:
        self.claims = claims

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.claims.client_id)

    def get_scope(self) -> str:
        return " ".join(sorted(self.claims.scope))

    def get_expires_in(self) -> int:
        return self.claims.exp - self.claims.iat

    # The verifier has already refused expired and revoked tokens.
    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return False
