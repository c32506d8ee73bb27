"""Access token verification (RFC 9068 JWTs) for every request to the gateway.

Rules, in the order they are checked:

1. The token is a compact JWS whose protected header has `typ: at+jwt`, an `alg` on the
   allow-list (EdDSA only: `none`, HMAC and everything else are refused before any key is
   touched) and the `kid` of one of our keys; the signature verifies with that key alone.
2. Claims: `iss` is ours, `aud` names our resource, `exp`, `iat`, `jti`, `sub`, `client_id`
   are present; `exp` is not past, `nbf` and `iat` are not in the future, each allowing
   `SKEW` seconds of clock difference, measured with the injected clock.
3. Revocation: the `jti` is not on the deny-list and `iat` is after the client's
   `revoked_before`.

Steps 1 and 2 cost a signature check, so their result is cached per token string (bounded
LRU; an entry is dropped when its token expires). Step 3 and the expiry check run on every
call, against in-memory state that `OAuthService.refresh_revocations()` reloads, so no
request waits on the database and a revocation is never cached away.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from joserfc import jws
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwt import JWTClaimsRegistry

from credcore.clock import Clock
from credcore.errors import InvalidToken

from .keys import ACCESS_TOKEN_ALG, ACCESS_TOKEN_REGISTRY, SigningKey

SKEW = 30  # seconds of clock difference tolerated on exp, nbf and iat
MAX_TOKEN_LENGTH = 4096  # our tokens are ~500 bytes; refuse to parse anything absurd
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 §2.1, RFC 7515 §4.1.9


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified claims of an access token."""

    client_id: str
    scope: frozenset[str]
    jti: str
    exp: int
    iat: int
    raw: Mapping[str, Any] = field(compare=False, repr=False)


class RevocationList:
    """In-memory revocation state: the jti deny-list and each client's `revoked_before`.

    Writers replace or extend it on the event loop; readers only look up, so the
    verifier needs no lock on its fast path.
    """

    def __init__(self) -> None:
        self.denied: dict[str, int] = {}  # jti -> exp
        self.revoked_before: dict[str, int] = {}  # client_id -> NumericDate
        self.version = 0

    def check(self, claims: AccessClaims) -> None:
        if claims.jti in self.denied:
            raise InvalidToken("The access token has been revoked.")
        before = self.revoked_before.get(claims.client_id)
        if before is not None and claims.iat <= before:
            raise InvalidToken("The access token has been revoked.")

    def deny(self, jti: str, exp: int) -> None:
        if jti not in self.denied:
            self.denied[jti] = exp
            self.version += 1

    def revoke_before(self, client_id: str, when: int) -> None:
        if self.revoked_before.get(client_id, when - 1) < when:
            self.revoked_before[client_id] = when
            self.version += 1

    def merge(
        self, denied: dict[str, int], revoked_before: dict[str, int], live_after: int
    ) -> None:
        """Fold in the state loaded from the database, dropping entries of expired tokens.

        A merge, never a replacement: revocations only ever grow, and a load that began
        before a local revocation was committed must not undo it.
        """
        merged_denied = {
            jti: exp for jti, exp in {**self.denied, **denied}.items() if exp >= live_after
        }
        merged_before = dict(self.revoked_before)
        for client_id, when in revoked_before.items():
            merged_before[client_id] = max(when, merged_before.get(client_id, when))
        if merged_before != self.revoked_before or not denied.keys() <= self.denied.keys():
            self.version += 1
        # Whole dicts are swapped in, so a concurrent reader sees the old or the new state.
        self.denied = merged_denied
        self.revoked_before = merged_before


class TokenVerifier:
    """Verifies access tokens in memory; raises `InvalidToken` with a reason on any failure."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: Mapping[str, SigningKey],
        revocations: RevocationList,
        clock: Clock,
        cache_size: int = 16384,
    ) -> None:
        if not keys:
            raise ValueError("a verifier with no keys could verify nothing")
        self._keys = dict(keys)
        self._revocations = revocations
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[str, AccessClaims] = OrderedDict()
        self._lock = threading.Lock()  # the cache may be touched from worker threads too
        self._claims_registry = JWTClaimsRegistry(
            now=lambda: int(self._clock.time()),
            leeway=SKEW,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )

    def verify(self, token: str, *, before_revocation: Callable[[AccessClaims], None] | None = None) -> AccessClaims:
        """Verify `token`. `before_revocation` sees the verified claims before the revocation
        check: a suspended operator's revoked tokens answer 403 operator_suspended, not 401."""
        if not token:
            raise InvalidToken("The access token is missing.")
        with self._lock:
            claims = self._cache.get(token)
            if claims is not None:
                self._cache.move_to_end(token)
        if claims is None:
            claims = self._verify_signed(token)
            with self._lock:
                self._cache[token] = claims
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        elif claims.exp <= self._clock.time() - SKEW:
            with self._lock:
                self._cache.pop(token, None)
            raise InvalidToken("The access token has expired.")
        if before_revocation is not None:
            before_revocation(claims)
        self._revocations.check(claims)
        return claims

    def _verify_signed(self, token: str) -> AccessClaims:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("The access token is malformed.")
        try:
            obj = jws.extract_compact(token.encode("ascii"), registry=ACCESS_TOKEN_REGISTRY)
            header = obj.headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken("The access token is malformed.") from exc
        # Checked by hand before the library sees a key, so the reason is precise.
        alg = header.get("alg")
        if alg != ACCESS_TOKEN_ALG:
            raise InvalidToken(f"The access token's algorithm {alg!r} is not allowed.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("The token is not an access token (typ must be at+jwt).")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("The access token is signed with an unknown key.")
        try:
            valid = jws.validate_compact(obj, key.public, registry=ACCESS_TOKEN_REGISTRY)
        except JoseError as exc:
            raise InvalidToken("The access token's signature is invalid.") from exc
        if not valid:
            raise InvalidToken("The access token's signature is invalid.")
        try:
            raw = json.loads(obj.payload)
        except ValueError as exc:
            raise InvalidToken("The access token's payload is not JSON.") from exc
        if not isinstance(raw, dict):
            raise InvalidToken("The access token's payload is not a JSON object.")
        return self._check_claims(raw)

    def _check_claims(self, raw: dict[str, Any]) -> AccessClaims:
        try:
            self._claims_registry.validate(raw)
        except ExpiredTokenError as exc:
            raise InvalidToken("The access token has expired.") from exc
        except JoseError as exc:
            raise InvalidToken(f"The access token's claims are invalid: {exc.description}") from exc
        scope = raw.get("scope", "")
        client_id, iat, exp = raw["client_id"], raw["iat"], raw["exp"]
        if not isinstance(scope, str) or not isinstance(client_id, str):
            raise InvalidToken("The access token's scope or client_id is malformed.")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidToken("The access token's iat and exp must be integers.")
        return AccessClaims(
            client_id=client_id,
            scope=frozenset(scope.split()),
            jti=raw["jti"],
            exp=exp,
            iat=iat,
            raw=MappingProxyType(raw),
        )
