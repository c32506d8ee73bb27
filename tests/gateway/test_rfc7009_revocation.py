"""RFC 7009 token revocation at POST /oauth/revoke, and revoke_all_tokens()."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import func, select

from credcore.errors import InvalidToken, NotFound
from gateway.oauth.tables import oauth_revoked_tokens
from gateway.oauth.verifier import RevocationList
from tests.gateway.oauth_fixtures import (
    Env,
    Factory,
    basic,
    get_token,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
    post_form,
    run_sync,
)


async def client(env: Env) -> tuple[str, str]:
    client_id, secret = await env.service.create_client(name="op", scope="penalties:read")
    assert secret is not None
    return client_id, secret


async def revoke(env: Env, token: str, client_id: str, secret: str, **extra: str) -> Any:
    assert env.http is not None
    form = {"token": token, **extra}
    return await post_form(env.http, "/oauth/revoke", form, basic(client_id, secret))


def _revoke_with_session(url: str, client_id: str, secret: str, token: str) -> int:
    with OAuth2Session(client_id, secret) as session:
        return int(session.revoke_token(url, token=token).status_code)


async def test_revoked_token_no_longer_verifies(oauth: Factory) -> None:
    """A client revokes its own token with a standard client; the verifier then refuses it."""
    env = await oauth(issuer="loopback")
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    version = env.service.revocation_version
    env.service.verifier().verify(token)  # cached before the revocation
    url = env.service.issuer + "/oauth/revoke"
    assert await run_sync(_revoke_with_session, url, client_id, secret, token) == 200
    with pytest.raises(InvalidToken, match="revoked"):
        env.service.verifier().verify(token)
    assert env.service.revocation_version > version


async def test_another_client_cannot_revoke_the_token(oauth: Factory) -> None:
    """Revocation by a client that does not own the token is refused and revokes nothing."""
    env = await oauth()
    owner_id, owner_secret = await client(env)
    other_id, other_secret = await client(env)
    token = await get_token(env, owner_id, owner_secret)
    status, body, _ = await revoke(env, token, other_id, other_secret)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert env.service.verifier().verify(token).client_id == owner_id


@pytest.mark.parametrize("token", ["unknown", "a.b.c"])
async def test_unknown_tokens_answer_200(oauth: Factory, token: str) -> None:
    """Revoking a token the server does not know answers 200 (RFC 7009 §2.2)."""
    env = await oauth()
    client_id, secret = await client(env)
    status, body, _ = await revoke(env, token, client_id, secret)
    assert (status, body) == (200, {})


async def test_revoking_twice_and_expired_tokens_answer_200(oauth: Factory) -> None:
    """A revoked or expired token can be revoked again without an error."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    assert (await revoke(env, token, client_id, secret))[0] == 200
    assert (await revoke(env, token, client_id, secret))[0] == 200
    env.clock.advance(3600)
    assert (await revoke(env, token, client_id, secret))[0] == 200


async def test_revocation_requires_client_authentication(oauth: Factory) -> None:
    """Revocation without valid client credentials is invalid_client and revokes nothing."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    status, body, _ = await revoke(env, token, client_id, "wrong")
    assert (status, body["error"]) == (401, "invalid_client")
    env.service.verifier().verify(token)


@pytest.mark.parametrize("hint", ["refresh_token", "id_token"])
async def test_an_unhelpful_hint_does_not_stop_the_search(oauth: Factory, hint: str) -> None:
    """Whatever token_type_hint says, the access token is found and revoked (§2.1)."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    status, _, _ = await revoke(env, token, client_id, secret, token_type_hint=hint)
    assert status == 200
    with pytest.raises(InvalidToken):
        env.service.verifier().verify(token)


async def test_missing_token_is_invalid_request(oauth: Factory) -> None:
    """A revocation request without a token answers 400 invalid_request."""
    env = await oauth()
    client_id, secret = await client(env)
    status, body, _ = await revoke(env, "", client_id, secret)
    assert (status, body["error"]) == (400, "invalid_request")


@pytest.mark.parametrize("db", ["shared.db", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_other_processes_see_the_revocation_after_refresh(oauth: Factory, db: str) -> None:
    """A revocation in one process reaches another's verifier on refresh_revocations()."""
    first = await oauth(db=db)
    client_id, secret = await client(first)
    token = await get_token(first, client_id, secret)
    second = await oauth(same_db_as=first)
    second.service.verifier().verify(token)  # same keys: the token verifies there too
    await revoke(first, token, client_id, secret)
    second.service.verifier().verify(token)  # not yet polled
    version = second.service.revocation_version
    await second.service.refresh_revocations()
    with pytest.raises(InvalidToken):
        second.service.verifier().verify(token)
    assert second.service.revocation_version > version
    await second.service.refresh_revocations()
    assert second.service.revocation_version == version + 1  # nothing new: unchanged


async def test_revoke_all_tokens_revokes_earlier_tokens_only(oauth: Factory) -> None:
    """revoke_all_tokens kills every earlier token; one issued after, same second, works."""
    env = await oauth()
    client_id, secret = await client(env)
    other_id, other_secret = await client(env)
    old = [await get_token(env, client_id, secret) for _ in range(2)]
    bystander = await get_token(env, other_id, other_secret)
    await env.service.revoke_all_tokens(client_id)
    for token in old:
        with pytest.raises(InvalidToken, match="revoked"):
            env.service.verifier().verify(token)
    env.service.verifier().verify(bystander)
    fresh = await get_token(env, client_id, secret)  # the clock has not moved
    env.service.verifier().verify(fresh)
    await env.service.revoke_all_tokens(client_id)  # again in the same second
    with pytest.raises(InvalidToken):
        env.service.verifier().verify(fresh)


async def test_revoke_all_tokens_reaches_other_processes(oauth: Factory) -> None:
    """A per-client revoked_before set in one process is loaded by another."""
    first = await oauth(db="shared.db")
    client_id, secret = await client(first)
    token = await get_token(first, client_id, secret)
    second = await oauth(same_db_as=first)
    await first.service.revoke_all_tokens(client_id)
    await second.service.refresh_revocations()
    with pytest.raises(InvalidToken):
        second.service.verifier().verify(token)
    with pytest.raises(NotFound):
        await first.service.revoke_all_tokens("nobody")


async def test_expired_revocations_are_purged(oauth: Factory) -> None:
    """Deny-list rows go once their tokens would have expired anyway."""
    env = await oauth()
    client_id, secret = await client(env)
    token = await get_token(env, client_id, secret)
    await revoke(env, token, client_id, secret)

    async def rows() -> int:
        async with env.engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(oauth_revoked_tokens))
            return int(count or 0)

    assert await rows() == 1
    env.clock.advance(300 + 31 + 60)
    await env.service.refresh_revocations()
    assert await rows() == 0
    assert env.service._revocations.denied == {}  # noqa: SLF001


def test_merge_keeps_local_revocations_made_during_a_load() -> None:
    """A reload that began before a local revocation committed does not undo it."""
    state = RevocationList()
    state.deny("local", exp=2000)
    state.revoke_before("c1", 1500)
    state.merge({"remote": 2000}, {"c1": 1400, "c2": 1200}, live_after=1000)
    assert state.denied == {"local": 2000, "remote": 2000}
    assert state.revoked_before == {"c1": 1500, "c2": 1200}
    state.merge({"old": 900}, {}, live_after=1000)  # already expired: dropped
    assert "old" not in state.denied
