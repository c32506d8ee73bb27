"""RFC 6749 §4.4 client credentials at POST /oauth/token, and the §5.2 error responses."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import select

from credcore.errors import ConfigError, InvalidParameter, NotFound
from gateway.oauth import ClientInfo, OAuthService
from gateway.oauth.secret_hash import VerifiedSecrets, check_secret, hash_secret
from gateway.oauth.tables import oauth_clients
from tests.gateway.oauth_fixtures import (
    AUDIENCE,
    Factory,
    basic,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
    post_form,
    run_sync,
)

GRANT = {"grant_type": "client_credentials"}


def _fetch(url: str, client_id: str, secret: str, method: str, scope: str | None) -> Any:
    with OAuth2Session(client_id, secret, token_endpoint_auth_method=method, scope=scope) as s:
        return s.fetch_token(url, grant_type="client_credentials")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_standard_client_gets_a_token(oauth: Factory, method: str) -> None:
    """authlib's own OAuth2Session gets a verifiable token with either secret method."""
    env = await oauth(issuer="loopback")
    client_id, secret = await env.service.create_client(name="op", scope="penalties:read audit")
    assert secret is not None
    url = env.service.token_endpoint
    token = await run_sync(_fetch, url, client_id, secret, method, None)
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 300
    claims = env.service.verifier().verify(token["access_token"])
    assert claims.client_id == client_id
    assert claims.scope == {"penalties:read", "audit"}  # omitted scope: all registered


async def test_requested_scope_is_granted_when_within_registration(oauth: Factory) -> None:
    """A client asking for part of its registered scope gets exactly that part."""
    env = await oauth(issuer="loopback")
    client_id, secret = await env.service.create_client(name="op", scope="a b c")
    assert secret is not None
    token = await run_sync(
        _fetch, env.service.token_endpoint, client_id, secret, "client_secret_basic", "b a"
    )
    assert token["scope"] == "b a"
    assert env.service.verifier().verify(token["access_token"]).scope == {"a", "b"}


async def test_scope_beyond_registration_is_invalid_scope(oauth: Factory) -> None:
    """Asking for a scope the client was not registered with answers 400 invalid_scope."""
    env = await oauth(issuer="loopback")
    client_id, secret = await env.service.create_client(name="op", scope="penalties:read")
    assert secret is not None
    with pytest.raises(OAuthError) as caught:
        await run_sync(
            _fetch,
            env.service.token_endpoint,
            client_id,
            secret,
            "client_secret_basic",
            "penalties:read admin",
        )
    assert caught.value.error == "invalid_scope"


async def test_scope_outside_scopes_supported_is_invalid_scope(oauth: Factory) -> None:
    """A server-wide scopes_supported list refuses unknown scopes, at registration too."""
    env = await oauth(scopes_supported=["a", "b"])
    client_id, secret = await env.service.create_client(name="op", scope="a b")
    assert env.http is not None and secret is not None
    status, body, _ = await post_form(
        env.http, "/oauth/token", {**GRANT, "scope": "a zzz"}, basic(client_id, secret)
    )
    assert (status, body["error"]) == (400, "invalid_scope")
    with pytest.raises(InvalidParameter):
        await env.service.create_client(name="op2", scope="a zzz")


async def test_wrong_secret_with_basic_is_401_with_www_authenticate(oauth: Factory) -> None:
    """A wrong secret over HTTP Basic answers 401 invalid_client and a Basic challenge."""
    env = await oauth()
    client_id, _ = await env.service.create_client(name="op", scope="a")
    assert env.http is not None
    status, body, headers = await post_form(env.http, "/oauth/token", GRANT, basic(client_id, "x"))
    assert (status, body["error"]) == (401, "invalid_client")
    assert headers["WWW-Authenticate"].startswith("Basic ")
    assert headers["Cache-Control"] == "no-store"


async def test_wrong_secret_in_body_is_invalid_client(oauth: Factory) -> None:
    """A wrong client_secret in the form is refused with invalid_client."""
    env = await oauth()
    client_id, _ = await env.service.create_client(name="op", scope="a")
    assert env.http is not None
    form = {**GRANT, "client_id": client_id, "client_secret": "wrong"}
    status, body, _ = await post_form(env.http, "/oauth/token", form)
    assert status in (400, 401) and body["error"] == "invalid_client"


async def test_unknown_client_is_invalid_client(oauth: Factory) -> None:
    """A client_id nobody registered is refused with 401 invalid_client."""
    env = await oauth()
    assert env.http is not None
    status, body, _ = await post_form(env.http, "/oauth/token", GRANT, basic("nobody", "secret"))
    assert (status, body["error"]) == (401, "invalid_client")


async def test_no_client_authentication_is_invalid_client(oauth: Factory) -> None:
    """A token request without any client credentials is refused with invalid_client."""
    env = await oauth()
    assert env.http is not None
    status, body, _ = await post_form(env.http, "/oauth/token", GRANT)
    assert (status, body["error"]) == (401, "invalid_client")


async def test_suspended_client_cannot_get_tokens_until_resumed(oauth: Factory) -> None:
    """A suspended client gets invalid_client; once active again it gets tokens."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert env.http is not None and secret is not None
    await env.service.set_client_status(client_id, "suspended")
    status, body, _ = await post_form(env.http, "/oauth/token", GRANT, basic(client_id, secret))
    assert (status, body["error"]) == (401, "invalid_client")
    await env.service.set_client_status(client_id, "active")
    status, body, _ = await post_form(env.http, "/oauth/token", GRANT, basic(client_id, secret))
    assert status == 200, body


async def test_method_not_registered_for_the_client_is_refused(oauth: Factory) -> None:
    """A client registered for Basic only cannot authenticate with client_secret_post."""
    env = await oauth()
    client_id, secret = await env.service.create_client(
        name="op", scope="a", auth_methods=["client_secret_basic"]
    )
    assert env.http is not None and secret is not None
    form = {**GRANT, "client_id": client_id, "client_secret": secret}
    status, body, _ = await post_form(env.http, "/oauth/token", form)
    assert body["error"] == "invalid_client"


@pytest.mark.parametrize("grant_type", ["password", "authorization_code", "refresh_token", "x"])
async def test_other_grant_types_are_unsupported(oauth: Factory, grant_type: str) -> None:
    """Only client_credentials is served; any other grant_type is unsupported_grant_type."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert env.http is not None and secret is not None
    status, body, _ = await post_form(
        env.http, "/oauth/token", {"grant_type": grant_type}, basic(client_id, secret)
    )
    assert (status, body["error"]) == (400, "unsupported_grant_type")


@pytest.mark.parametrize(
    "form, why",
    [
        ({"scope": "a"}, "missing grant_type"),
        ([("grant_type", "client_credentials"), ("scope", "a"), ("scope", "b")], "repeated"),
    ],
)
async def test_malformed_requests_are_invalid_request(oauth: Factory, form: Any, why: str) -> None:
    """A missing or repeated parameter answers 400 invalid_request."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a b")
    assert env.http is not None and secret is not None
    status, body, _ = await post_form(env.http, "/oauth/token", form, basic(client_id, secret))
    assert (status, body["error"]) == (400, "invalid_request"), why


async def test_json_body_is_invalid_request(oauth: Factory) -> None:
    """The token endpoint takes application/x-www-form-urlencoded only."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert env.http is not None and secret is not None
    response = await env.http.post("/oauth/token", json=GRANT, headers=basic(client_id, secret))
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"


async def test_two_authentication_methods_at_once_are_invalid_request(oauth: Factory) -> None:
    """Basic and a client_secret in the body together are refused (RFC 6749 §2.3)."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert env.http is not None and secret is not None
    form = {**GRANT, "client_id": client_id, "client_secret": secret}
    status, body, _ = await post_form(env.http, "/oauth/token", form, basic(client_id, secret))
    assert (status, body["error"]) == (400, "invalid_request")


async def test_client_id_in_body_must_match_basic_credentials(oauth: Factory) -> None:
    """A client_id parameter naming another client than the credentials is refused."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    other, _ = await env.service.create_client(name="other", scope="a")
    assert env.http is not None and secret is not None
    form = {**GRANT, "client_id": other}
    status, body, _ = await post_form(env.http, "/oauth/token", form, basic(client_id, secret))
    assert body["error"] == "invalid_client"


async def test_secrets_are_stored_as_scrypt_hashes(oauth: Factory) -> None:
    """The clients table holds a salted scrypt hash, never the secret itself."""
    env = await oauth(http=False)
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert secret is not None
    async with env.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(oauth_clients.c.secret_hash).where(oauth_clients.c.client_id == client_id)
            )
        ).scalar_one()
    assert stored.startswith("scrypt$") and secret not in stored
    assert check_secret(secret, stored) and not check_secret(secret + "x", stored)


def test_verified_secrets_skip_the_kdf_on_repeats_but_not_on_failures() -> None:
    """A secret that verified once is answered from memory; wrong guesses always pay."""
    calls: list[str] = []

    def counting(secret: str, stored: str) -> bool:
        calls.append(secret)
        return check_secret(secret, stored)

    stored = hash_secret("right", lambda n: b"\x01" * n)
    cache = VerifiedSecrets(kdf_check=counting)
    assert cache.check("c", "right", stored) and cache.check("c", "right", stored)
    assert not cache.check("c", "wrong", stored) and not cache.check("c", "wrong", stored)
    assert calls == ["right", "wrong", "wrong"]
    # bound to the stored hash: a changed secret is not matched by the old entry
    assert not cache.check("c", "right", hash_secret("new", lambda n: b"\x02" * n))


async def test_get_client_describes_without_secret(oauth: Factory) -> None:
    """get_client returns the registration (scope, methods, status) and None when unknown."""
    env = await oauth(http=False)
    client_id, _ = await env.service.create_client(
        name="Operator", scope="b a", client_id="operator-1", client_secret="s3cret-s3cret"
    )
    info = await env.service.get_client(client_id)
    assert isinstance(info, ClientInfo)
    assert (info.client_id, info.name, info.scope, info.status) == (
        "operator-1",
        "Operator",
        frozenset({"a", "b"}),
        "active",
    )
    assert info.auth_methods == ("client_secret_basic", "client_secret_post")
    assert info.created_at == env.clock.now()
    assert not hasattr(info, "secret_hash")
    assert await env.service.get_client("nobody") is None


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"client_id": "op-1"}, "client_id"),  # registered twice
        ({"client_id": "bad id/with spaces"}, "client_id"),
        ({"scope": 'quote"d'}, "scope"),
        ({"auth_methods": ["none"]}, "auth_methods"),
        ({"auth_methods": []}, "auth_methods"),
        ({"name": ""}, "name"),
        ({"client_secret": ""}, "client_secret"),
    ],
)
async def test_bad_registrations_name_the_parameter(
    oauth: Factory, kwargs: dict[str, Any], parameter: str
) -> None:
    """create_client refuses malformed input with InvalidParameter naming the field."""
    env = await oauth(http=False)
    await env.service.create_client(name="first", scope="a", client_id="op-1")
    with pytest.raises(InvalidParameter) as caught:
        await env.service.create_client(**{"name": "op", "scope": "a", **kwargs})
    assert caught.value.parameter == parameter


async def test_status_changes_are_validated(oauth: Factory) -> None:
    """Only active/suspended are statuses, and only registered clients have one."""
    env = await oauth(http=False)
    client_id, _ = await env.service.create_client(name="op", scope="a")
    with pytest.raises(InvalidParameter):
        await env.service.set_client_status(client_id, "deleted")
    with pytest.raises(NotFound):
        await env.service.set_client_status("nobody", "suspended")


@pytest.mark.parametrize(
    "options",
    [
        {"token_lifetime": 601},
        {"token_lifetime": 0},
        {"audience": ""},
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any]) -> None:
    """Lifetimes over ten minutes and an empty audience fail at construction."""
    settings = {"issuer": "https://gateway.example", "audience": AUDIENCE, **options}
    with pytest.raises(ConfigError):
        OAuthService(None, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "issuer",
    [
        "http://gateway.example",  # plain http off loopback
        "https://gateway.example/sub",  # the endpoints live at the root
        "offline",  # fine for admin commands on the database, not for serving
    ],
)
def test_serving_needs_a_secure_origin_as_issuer(issuer: str) -> None:
    """Mounting the endpoints with an insecure or path-bearing issuer is a ConfigError."""
    service = OAuthService(None, issuer=issuer, audience=AUDIENCE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        service.routes()


async def test_store_failure_is_503_not_a_crash(oauth: Factory) -> None:
    """If the clients table cannot be read, the token endpoint answers 503."""
    env = await oauth()
    client_id, secret = await env.service.create_client(name="op", scope="a")
    assert env.http is not None and secret is not None
    async with env.engine.begin() as conn:
        await conn.run_sync(oauth_clients.drop)
    status, body, _ = await post_form(env.http, "/oauth/token", GRANT, basic(client_id, secret))
    assert (status, body["error"]) == (503, "service_unavailable")


async def test_hooks_refuse_to_block_the_event_loop(oauth: Factory) -> None:
    """authlib's flow must run on a worker thread; on the loop it raises instead of hanging."""
    env = await oauth(http=False)
    handlers = env.service._handlers  # noqa: SLF001
    assert handlers is not None
    with pytest.raises(RuntimeError):
        handlers.server.query_client("anyone")
