"""RFC 9068 JWT access tokens: their form, independent verification, and the verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey
from joserfc.jwt import JWTClaimsRegistry

from credcore.errors import InvalidToken
from gateway.oauth.keys import SigningKey
from tests.gateway.oauth_fixtures import (
    AUDIENCE,
    IGNORE_EDDSA_WARNING,
    ISSUER,
    Env,
    Factory,
    b64json,
    b64url,
    get_token,
    good_claims,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
    split_token,
)

pytestmark = IGNORE_EDDSA_WARNING


async def env_with_token(oauth: Factory, **options: Any) -> tuple[Env, str, str]:
    env = await oauth(**options)
    client_id, secret = await env.service.create_client(name="op", scope="penalties:read")
    assert secret is not None
    return env, client_id, await get_token(env, client_id, secret)


async def test_token_has_the_rfc9068_header_and_claims(oauth: Factory) -> None:
    """typ at+jwt, alg EdDSA, a thumbprint kid, and iss/sub/aud/client_id/scope/jti/iat/exp."""
    env, client_id, token = await env_with_token(oauth)
    header, claims, _ = split_token(token)
    key = await env.signing_key()
    assert header == {"typ": "at+jwt", "alg": "EdDSA", "kid": key.public.thumbprint()}
    now = int(env.clock.time())
    assert claims == {
        "iss": ISSUER,
        "sub": client_id,
        "aud": AUDIENCE,
        "client_id": client_id,
        "scope": "penalties:read",
        "jti": claims["jti"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }


async def test_lifetime_is_configurable_and_jti_comes_from_token_bytes(oauth: Factory) -> None:
    """token_lifetime sets exp - iat; the injected token_bytes makes the jti."""
    env, _, token = await env_with_token(oauth, token_lifetime=600, token_bytes=lambda n: b"\7" * n)
    _, claims, _ = split_token(token)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"] == b64url(b"\7" * 16)


async def test_every_token_has_its_own_jti(oauth: Factory) -> None:
    """Two tokens for the same client never share a jti."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert secret is not None
    tokens = [await get_token(env, client_id, secret) for _ in range(3)]
    assert len({split_token(token)[1]["jti"] for token in tokens}) == 3


async def fetch_jwks(env: Env) -> dict[str, Any]:
    assert env.http is not None
    response = await env.http.get("/.well-known/jwks.json")
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


async def test_token_verifies_with_joserfc_against_the_published_jwks(oauth: Factory) -> None:
    """joserfc, given only /.well-known/jwks.json, verifies the signature and the claims."""
    env, client_id, token = await env_with_token(oauth)
    keys = KeySet.import_key_set(await fetch_jwks(env))  # type: ignore[arg-type]
    decoded = jwt.decode(token, keys, algorithms=["EdDSA"])
    assert decoded.header["typ"] == "at+jwt"
    JWTClaimsRegistry(
        now=int(env.clock.time()),
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        client_id={"essential": True, "value": client_id},
    ).validate(decoded.claims)


async def test_token_verifies_with_authlib_jose_against_the_published_jwks(oauth: Factory) -> None:
    """authlib.jose, given only the published JWK Set, verifies the token too."""
    with warnings.catch_warnings():  # authlib.jose is deprecated in favour of joserfc
        warnings.simplefilter("ignore")
        from authlib.jose import JsonWebKey, JsonWebToken

    env, client_id, token = await env_with_token(oauth)
    keys = JsonWebKey.import_key_set(await fetch_jwks(env))
    claims = JsonWebToken(["EdDSA"]).decode(
        token,
        keys,
        claims_options={
            "iss": {"essential": True, "value": ISSUER},
            "aud": {"essential": True, "value": AUDIENCE},
        },
    )
    claims.validate(now=int(env.clock.time()))
    assert claims["client_id"] == client_id


# --- forged and spoiled tokens ----------------------------------------------------------


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64json(header)}.{b64json(claims)}."


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


Forger = Callable[[Env, SigningKey], Awaitable[str]]


async def _alg_none(env: Env, key: SigningKey) -> str:
    return unsigned({"alg": "none", "typ": "at+jwt", "kid": key.kid}, good_claims(env.clock))


async def _hs256_with_public_pem(env: Env, key: SigningKey) -> str:
    raw = key.public.public_key
    pem = raw.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    return hs256(header, good_claims(env.clock), pem)


async def _hs256_with_public_bytes(env: Env, key: SigningKey) -> str:
    raw = key.public.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hs256({"alg": "HS256", "typ": "at+jwt", "kid": key.kid}, good_claims(env.clock), raw)


async def _foreign_key_under_our_kid(env: Env, key: SigningKey) -> str:
    foreign = OKPKey.import_key(Ed25519PrivateKey.generate())
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid}
    return jwt.encode(header, good_claims(env.clock), foreign, algorithms=["EdDSA"])


async def _unknown_kid(env: Env, key: SigningKey) -> str:
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": "someone-elses"}
    return jwt.encode(header, good_claims(env.clock), key.private, algorithms=["EdDSA"])


async def _tampered_payload(env: Env, key: SigningKey) -> str:
    header_segment, _, signature = key.sign({"typ": "at+jwt"}, good_claims(env.clock)).split(".")
    widened = good_claims(env.clock, scope="penalties:read admin")
    return f"{header_segment}.{b64json(widened)}.{signature}"


def _signed_by_us(**overrides: Any) -> Forger:
    async def forge(env: Env, key: SigningKey) -> str:
        typ = overrides.pop("typ", "at+jwt")
        return key.sign({"typ": typ}, good_claims(env.clock, **overrides))

    return forge


def _now_plus(seconds: int) -> Callable[[Env], int]:
    return lambda env: int(env.clock.time()) + seconds


FORGERIES: dict[str, Forger] = {
    "alg none": _alg_none,
    "HS256 keyed with the public key PEM": _hs256_with_public_pem,
    "HS256 keyed with the raw public key": _hs256_with_public_bytes,
    "foreign Ed25519 key under our kid": _foreign_key_under_our_kid,
    "unknown kid": _unknown_kid,
    "tampered payload": _tampered_payload,
    "typ JWT instead of at+jwt": _signed_by_us(typ="JWT"),
    "wrong issuer": _signed_by_us(iss="https://evil.example"),
    "wrong audience": _signed_by_us(aud="https://other-resource.example"),
    "no audience": _signed_by_us(aud=None),
    "no jti": _signed_by_us(jti=None),
    "no client_id": _signed_by_us(client_id=None),
}


@pytest.mark.parametrize("name", list(FORGERIES))
async def test_forged_tokens_are_invalid(oauth: Factory, name: str) -> None:
    """Each forged or spoiled token raises InvalidToken (401 invalid_token)."""
    env = await oauth(http=False)
    token = await FORGERIES[name](env, await env.signing_key())
    with pytest.raises(InvalidToken) as caught:
        env.service.verifier().verify(token)
    assert caught.value.status == 401 and caught.value.code == "invalid_token"


@pytest.mark.parametrize(
    "claims, why",
    [
        ({"exp": -31}, "expired beyond the 30 s skew"),
        ({"nbf": 31}, "not valid for another 31 s"),
        ({"iat": 31}, "issued 31 s in the future"),
    ],
)
async def test_tokens_outside_their_time_are_invalid(
    oauth: Factory, claims: dict[str, int], why: str
) -> None:
    """exp, nbf and iat are checked against the injected clock with a 30 s skew."""
    env = await oauth(http=False)
    key = await env.signing_key()
    now = int(env.clock.time())
    times = {name: now + offset for name, offset in claims.items()}
    if "exp" in claims:
        times.update(iat=now - 300, nbf=now - 300)
    with pytest.raises(InvalidToken):
        env.service.verifier().verify(key.sign({"typ": "at+jwt"}, good_claims(env.clock, **times)))
    # ...and just inside the skew, the same shapes verify
    inside = {name: value - 1 if name != "exp" else value + 2 for name, value in times.items()}
    env.service.verifier().verify(key.sign({"typ": "at+jwt"}, good_claims(env.clock, **inside)))


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b.c.d.e", "x" * 5000, "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "é.é.é"],
)
async def test_missing_and_malformed_tokens_are_invalid(oauth: Factory, token: str) -> None:
    """Empty, non-JWS, JWE-shaped, oversized and non-ASCII tokens raise InvalidToken."""
    env = await oauth(http=False)
    with pytest.raises(InvalidToken):
        env.service.verifier().verify(token)


async def test_token_expires_even_when_cached(oauth: Factory) -> None:
    """A verified token is cached, but the cache never outlives exp (plus the skew)."""
    env, _, token = await env_with_token(oauth)
    verifier = env.service.verifier()
    assert verifier.verify(token) is verifier.verify(token)  # the second came from the cache
    env.clock.advance(300 + 29)
    verifier.verify(token)
    env.clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


async def test_revocation_is_checked_on_cached_tokens(oauth: Factory) -> None:
    """Revoking a token that is already in the cache makes the next verify fail."""
    env, client_id, token = await env_with_token(oauth)
    verifier = env.service.verifier()
    verifier.verify(token)
    await env.service.revoke_all_tokens(client_id)
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)


async def test_cache_is_bounded(oauth: Factory) -> None:
    """The verified-token cache keeps at most its configured number of entries."""
    env = await oauth(http=False)
    key = await env.signing_key()
    verifier = type(env.service.verifier())(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys={key.kid: key},
        revocations=env.service._revocations,  # noqa: SLF001 - same state, small cache
        clock=env.clock,
        cache_size=3,
    )
    for _ in range(10):
        verifier.verify(key.sign({"typ": "at+jwt"}, good_claims(env.clock)))
    assert len(verifier._cache) == 3  # noqa: SLF001


async def test_repeated_verification_is_a_cheap_lookup(oauth: Factory) -> None:
    """A cached token verifies in microseconds (the gateway's throughput depends on it)."""
    env, _, token = await env_with_token(oauth)
    verifier = env.service.verifier()
    verifier.verify(token)
    started = time.perf_counter()
    for _ in range(20_000):
        verifier.verify(token)
    per_call = (time.perf_counter() - started) / 20_000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per cached verify"


async def test_raw_claims_are_read_only(oauth: Factory) -> None:
    """AccessClaims exposes the raw claims without letting a caller change the cached ones."""
    env, _, token = await env_with_token(oauth)
    claims = env.service.verifier().verify(token)
    assert claims.raw["scope"] == "penalties:read"
    with pytest.raises(TypeError):
        claims.raw["scope"] = "admin"  # type: ignore[index]
    assert json.loads(json.dumps(dict(claims.raw)))["aud"] == AUDIENCE
