"""RFC 7523 §2.2 `private_key_jwt` client authentication at the token endpoint."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, OKPKey

from credcore.clock import SystemClock
from credcore.errors import InvalidParameter
from tests.gateway.oauth_fixtures import (
    IGNORE_EDDSA_WARNING,
    ISSUER,
    TOKEN_ENDPOINT,
    Env,
    Factory,
    b64json,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
    post_form,
    run_sync,
)

pytestmark = IGNORE_EDDSA_WARNING
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_key(kind: str = "OKP") -> Key:
    if kind == "EC":
        return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    return OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(
    key: Key,
    client_id: str,
    env: Env,
    *,
    alg: str = "EdDSA",
    aud: str = TOKEN_ENDPOINT,
    lifetime: int = 60,
    **claims: Any,
) -> str:
    """A client assertion signed by `key`, timed by the service's clock."""
    now = int(env.clock.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])


async def token_with(env: Env, signed: str, **extra: str) -> tuple[int, dict[str, Any]]:
    assert env.http is not None
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **extra,
    }
    status, body, _ = await post_form(env.http, "/oauth/token", form)
    return status, body


async def register(env: Env, *keys: Key, methods: tuple[str, ...] = ("private_key_jwt",)) -> str:
    client_id, secret = await env.service.create_client(
        name="partner", scope="crosstab:push", jwks=public_jwks(*keys), auth_methods=methods
    )
    return client_id


def _fetch(url: str, client_id: str, key: Key) -> Any:
    with OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt") as session:
        session.register_client_auth_method(PrivateKeyJWT(url, alg="EdDSA"))
        return session.fetch_token(url, grant_type="client_credentials")


async def test_standard_client_authenticates_with_its_private_key(oauth: Factory) -> None:
    """authlib's OAuth2Session with PrivateKeyJWT (Ed25519) gets a token over loopback."""
    env = await oauth(issuer="loopback", clock=SystemClock())  # the client uses real time
    key = client_key()
    client_id = await register(env, key)
    token = await run_sync(_fetch, env.service.token_endpoint, client_id, key)
    claims = env.service.verifier().verify(token["access_token"])
    assert (claims.client_id, claims.scope) == (client_id, {"crosstab:push"})


async def test_es256_assertion_is_accepted(oauth: Factory) -> None:
    """An ES256 assertion from a registered P-256 key authenticates the client."""
    env = await oauth()
    key = client_key("EC")
    client_id = await register(env, key)
    status, body = await token_with(env, assertion(key, client_id, env, alg="ES256"))
    assert status == 200, body


async def test_issuer_identifier_is_an_accepted_audience(oauth: Factory) -> None:
    """The authorization server's issuer identifier also names it as the audience."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    status, body = await token_with(env, assertion(key, client_id, env, aud=ISSUER))
    assert status == 200, body


async def test_replayed_assertion_is_refused(oauth: Factory) -> None:
    """An assertion's jti is single-use: the second presentation is invalid_client."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    signed = assertion(key, client_id, env)
    assert (await token_with(env, signed))[0] == 200
    status, body = await token_with(env, signed)
    assert (status, body["error"]) == (400, "invalid_client")


@pytest.mark.parametrize("db", ["shared.db", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_replay_is_refused_by_another_process(oauth: Factory, db: str) -> None:
    """Two gateway processes on one database do not both accept the same assertion."""
    first = await oauth(db=db)
    key = client_key()
    client_id = await register(first, key)
    signed = assertion(key, client_id, first)
    assert (await token_with(first, signed))[0] == 200
    second = await oauth(same_db_as=first)
    status, body = await token_with(second, signed)
    assert body["error"] == "invalid_client"


@pytest.mark.parametrize(
    "change, why",
    [
        ({"aud": "https://elsewhere.example/oauth/token"}, "another audience"),
        ({"lifetime": -120}, "expired beyond the skew"),
        ({"lifetime": 7200}, "would pin its jti for two hours"),
        ({"iss": "someone-else"}, "iss differs from sub"),
        ({"jti": None}, "no jti"),
    ],
)
async def test_bad_assertions_are_invalid_client(
    oauth: Factory, change: dict[str, Any], why: str
) -> None:
    """Wrong audience, expiry, lifetime, issuer or a missing jti is invalid_client."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    signed = assertion(key, client_id, env, **change)
    status, body = await token_with(env, signed)
    assert (status, body["error"]) == (400, "invalid_client"), why


async def test_assertion_from_an_unregistered_key_is_refused(oauth: Factory) -> None:
    """A key that is not in the client's JWK Set cannot sign for it, even with its kid."""
    env = await oauth()
    client_id = await register(env, client_key())
    impostor = client_key()  # same kid "ed-1", different key
    status, body = await token_with(env, assertion(impostor, client_id, env))
    assert body["error"] == "invalid_client"


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_unsigned_or_symmetric_assertions_are_refused(oauth: Factory, alg: str) -> None:
    """alg none, or HS256 keyed with the client's public key, never authenticates."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    now = int(env.clock.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_ENDPOINT, "exp": now + 60}
    if alg == "none":
        signed = f"{b64json({'alg': 'none'})}.{b64json({**claims, 'jti': 'n1'})}."
    else:
        public = OctKey.import_key(str(key.as_dict(private=False)["x"]).encode())
        signed = jwt.encode({"alg": "HS256"}, {**claims, "jti": "h1"}, public)
    status, body = await token_with(env, signed)
    assert body["error"] == "invalid_client"


async def test_client_without_the_method_cannot_use_it(oauth: Factory) -> None:
    """A client with a JWK Set but registered for secrets only cannot use assertions."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key, methods=("client_secret_basic",))
    status, body = await token_with(env, assertion(key, client_id, env))
    assert body["error"] == "invalid_client"


async def test_unknown_or_suspended_client_is_refused(oauth: Factory) -> None:
    """An assertion for an unknown client, or for a suspended one, is invalid_client."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    assert (await token_with(env, assertion(key, "nobody", env)))[1]["error"] == "invalid_client"
    await env.service.set_client_status(client_id, "suspended")
    status, body = await token_with(env, assertion(key, client_id, env))
    assert body["error"] == "invalid_client"


async def test_client_id_parameter_must_match_the_assertion(oauth: Factory) -> None:
    """A client_id form parameter naming another client than the assertion is refused."""
    env = await oauth()
    key = client_key()
    client_id = await register(env, key)
    signed = assertion(key, client_id, env)
    status, body = await token_with(env, signed, client_id="someone-else")
    assert body["error"] == "invalid_client"


async def test_key_only_client_has_no_secret(oauth: Factory) -> None:
    """A private_key_jwt-only client gets no secret, and may not be given one."""
    env = await oauth(http=False)
    key = client_key()
    client_id, secret = await env.service.create_client(
        name="p", scope="a", jwks=public_jwks(key), auth_methods=["private_key_jwt"]
    )
    assert secret is None
    info = await env.service.get_client(client_id)
    assert info is not None and info.jwks == public_jwks(key)
    with pytest.raises(InvalidParameter):
        await env.service.create_client(
            name="p",
            scope="a",
            jwks=public_jwks(key),
            auth_methods=["private_key_jwt"],
            client_secret="x",
        )


@pytest.mark.parametrize(
    "jwks",
    [
        None,  # private_key_jwt needs keys
        {"keys": []},
        {"keys": [OKPKey.generate_key("Ed25519").as_dict(private=True)]},  # private material
        {"keys": [OctKey.generate_key(256).as_dict(private=True)]},  # symmetric
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}]},
    ],
)
async def test_bad_jwks_are_refused_at_registration(oauth: Factory, jwks: Any) -> None:
    """Registration accepts only a well-formed JWK Set of asymmetric public keys."""
    env = await oauth(http=False)
    with pytest.raises(InvalidParameter) as caught:
        await env.service.create_client(
            name="p", scope="a", jwks=jwks, auth_methods=["private_key_jwt"]
        )
    assert caught.value.parameter == "jwks"
