"""RFC 8414 server metadata, the RFC 7517 JWK Set, and signing keys that persist."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from sqlalchemy import select

from gateway.oauth.tables import oauth_signing_keys
from tests.gateway.oauth_fixtures import (
    ISSUER,
    Env,
    Factory,
    get_token,
    oauth_fixture,  # noqa: F401 - provides the `oauth` fixture
)


async def get_json(env: Env, path: str) -> dict[str, Any]:
    assert env.http is not None
    response = await env.http.get(path)
    assert response.status == 200
    assert response.content_type == "application/json"
    document: dict[str, Any] = await response.json()
    return document


async def test_metadata_names_every_endpoint_and_capability(oauth: Factory) -> None:
    """The document lists the issuer, endpoints, grant, auth methods, algorithms and scopes."""
    env = await oauth(scopes_supported=["penalties:read", "audit:read", "admin"])
    metadata = await get_json(env, "/.well-known/oauth-authorization-server")
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == ISSUER + "/oauth/token"
    assert metadata["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert metadata["introspection_endpoint"] == ISSUER + "/oauth/introspect"
    assert metadata["revocation_endpoint"] == ISSUER + "/oauth/revoke"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert "EdDSA" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert metadata["scopes_supported"] == ["penalties:read", "audit:read", "admin"]


async def test_metadata_passes_authlibs_rfc8414_checks(oauth: Factory) -> None:
    """authlib's RFC 8414 validators accept every field we publish."""
    env = await oauth(scopes_supported=["a"])
    metadata = AuthorizationServerMetadata(
        await get_json(env, "/.well-known/oauth-authorization-server")
    )
    for name in AuthorizationServerMetadata.REGISTRY_KEYS:
        if name == "response_types_supported":
            # There is no authorization endpoint, so no response type: an empty list,
            # which authlib's validator reads as "absent".
            assert metadata[name] == []
            continue
        getattr(metadata, f"validate_{name}")()


async def test_jwks_publishes_public_keys_only(oauth: Factory) -> None:
    """The JWK Set holds the Ed25519 public key with its thumbprint kid, and no private part."""
    env = await oauth()
    document = await get_json(env, "/.well-known/jwks.json")
    key = await env.signing_key()
    assert document == {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": key.public.as_dict()["x"],
                "kid": key.public.thumbprint(),
                "use": "sig",
                "alg": "EdDSA",
            }
        ]
    }


@pytest.mark.parametrize("db", ["keys.db", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_keys_persist_across_restarts(oauth: Factory, db: str) -> None:
    """A second service on the same database publishes the same JWKS and verifies old tokens."""
    first = await oauth(db=db)
    client_id, secret = await first.service.create_client(name="op", scope="a")
    assert secret is not None
    token = await get_token(first, client_id, secret)
    restarted = await oauth(same_db_as=first)
    assert await get_json(restarted, "/.well-known/jwks.json") == await get_json(
        first, "/.well-known/jwks.json"
    )
    assert restarted.service.verifier().verify(token).client_id == client_id
    # and the client, with its hashed secret, is still there
    assert (await get_token(restarted, client_id, secret)).count(".") == 2
    async with restarted.engine.connect() as conn:
        rows = (await conn.execute(select(oauth_signing_keys.c.kid))).all()
    assert len(rows) == 1


async def test_each_database_gets_its_own_key(oauth: Factory) -> None:
    """Keys are created at first start per database, not shared by code or by chance."""
    first = await oauth(db="one.db")
    second = await oauth(db="two.db")
    assert (await first.signing_key()).kid != (await second.signing_key()).kid
