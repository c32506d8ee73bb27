"""The OAuth 2 authorization server and the access token verifier of the gateway.

service.py      OAuthService: the public API (clients, keys, revocation, routes)
server.py       aiohttp adapter over authlib's AuthorizationServer
grants.py       client credentials, private_key_jwt, RFC 9068 tokens, RFC 7662/7009
verifier.py     TokenVerifier: the per-request check of RFC 9068 access tokens
keys.py         Ed25519 signing keys and the JWK Set
secret_hash.py  scrypt client secrets
registration.py checks on settings and client registrations
store.py        the SQL; tables.py the schema
"""

from .models import ClientInfo
from .service import OAuthService
from .tables import metadata
from .verifier import AccessClaims, TokenVerifier

__all__ = ["AccessClaims", "ClientInfo", "OAuthService", "TokenVerifier", "metadata"]
