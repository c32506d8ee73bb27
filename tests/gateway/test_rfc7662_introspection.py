"""RFC 7662 token introspection at POST /oauth/introspect."""

from __future__ import annotations

from typing import Any

from authlib.integrations.requests_client import OAuth2Session

from tests.gateway.oauth_fixtures import (
    AUDIENCE,
    ISSUER,
    Env,
    Factory,
    basic,
    get_token,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
    post_form,
    run_sync,
)


async def introspect(env: Env, token: str, client_id: str, secret: str) -> dict[str, Any]:
    assert env.http is not None
    status, body, headers = await post_form(
        env.http, "/oauth/introspect", {"token": token}, basic(client_id, secret)
    )
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    return body


async def client(env: Env, scope: str = "penalties:read") -> tuple[str, str]:
    client_id, secret = await env.service.create_client(name="op", scope=scope)
    assert secret is not None
    return client_id, secret


def _introspect_with_session(url: str, client_id: str, secret: str, token: str) -> Any:
    with OAuth2Session(client_id, secret) as session:
        return session.introspect_token(url, token=token).json()


async def test_own_valid_token_is_active_with_its_claims(oauth: Factory) -> None:
    """A client introspecting its own live token sees active and the token's claims."""
    env = await oauth(issuer="loopback")
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    url = env.service.issuer + "/oauth/introspect"
    body = await run_sync(_introspect_with_session, url, client_id, secret, token)
    now = int(env.clock.time())
    assert body == {
        "active": True,
        "token_type": "Bearer",
        "scope": "penalties:read",
        "client_id": client_id,
        "sub": client_id,
        "aud": AUDIENCE,
        "iss": env.service.issuer,
        "exp": now + 300,
        "iat": now,
        "nbf": now,
        "jti": body["jti"],
    }


async def test_revoked_token_is_inactive(oauth: Factory) -> None:
    """After revocation the same token introspects as {"active": false}."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    await env.service.revoke_all_tokens(client_id)
    assert await introspect(env, token, client_id, secret) == {"active": False}


async def test_expired_token_is_inactive(oauth: Factory) -> None:
    """A token past exp (and the skew) introspects as inactive, by the injected clock."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    env.clock.advance(300 + 30)
    assert await introspect(env, token, client_id, secret) == {"active": False}


async def test_garbage_and_foreign_tokens_are_inactive(oauth: Factory) -> None:
    """Strings that are not our tokens are inactive, never an error."""
    env = await oauth()
    client_id, secret = await client(env)
    for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."]:
        assert await introspect(env, token, client_id, secret) == {"active": False}


async def test_another_clients_token_is_inactive_except_for_admin(oauth: Factory) -> None:
    """A client cannot probe others' tokens; a client with the admin scope can."""
    env = await oauth()
    owner_id, owner_secret = await client(env)
    other_id, other_secret = await client(env)
    admin_id, admin_secret = await client(env, scope="admin")
    token = await get_token(env, owner_id, owner_secret)
    assert await introspect(env, token, other_id, other_secret) == {"active": False}
    assert (await introspect(env, token, admin_id, admin_secret))["active"] is True
    assert (await introspect(env, token, admin_id, admin_secret))["iss"] == ISSUER


async def test_caller_must_authenticate(oauth: Factory) -> None:
    """Introspection without client credentials, or with wrong ones, is invalid_client."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    assert env.http is not None
    status, body, _ = await post_form(env.http, "/oauth/introspect", {"token": token})
    assert (status, body["error"]) == (401, "invalid_client")
    status, body, _ = await post_form(
        env.http, "/oauth/introspect", {"token": token}, basic(client_id, "wrong")
    )
    assert (status, body["error"]) == (401, "invalid_client")


async def test_missing_token_parameter_is_invalid_request(oauth: Factory) -> None:
    """A request without the token parameter answers 400 invalid_request."""
    env = await oauth()
    client_id, secret = await client(env)
    assert env.http is not None
    status, body, _ = await post_form(
        env.http, "/oauth/introspect", {"token_type_hint": "access_token"}, basic(client_id, secret)
    )
    assert (status, body["error"]) == (400, "invalid_request")
