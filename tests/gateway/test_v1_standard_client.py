"""Done when: an unmodified standard OAuth client gets a token and data, and the token verifies
with an independent JWT library against the published JWKS.

The gateway runs on a real loopback port (aiohttp AppRunner/TCPSite, as `credgate serve` runs
it); authlib's requests-based OAuth2Session finds the token endpoint through RFC 8414 metadata,
authenticates with client_secret_basic and reads penalties; joserfc checks the token.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from aiohttp.test_utils import unused_port
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from gateway.admin import provision_operator
from gateway.app import build_app, start_site
from gateway.config import Settings, load_settings
from gateway.services import GATEWAY
from tests.conftest import OPERATOR_LICENCE


@pytest.fixture
async def served(tmp_path: Path, store_url: str) -> AsyncIterator[tuple[Settings, Any, str]]:
    """A gateway listening on a loopback port, its issuer its own address; and an operator's secret."""
    port = unused_port()
    settings = load_settings(environ={}, overrides={
        "server": {"host": "127.0.0.1", "port": port, "public_url": f"http://127.0.0.1:{port}"},
        "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "upstream": {"url": store_url},
    })
    app = build_app(settings)
    runner, bound = await start_site(app, "127.0.0.1", port)
    assert bound == port
    _cid, secret = await provision_operator(app[GATEWAY], name="op", client_id="op", licence=OPERATOR_LICENCE,
                                            licence_id="op-L1")
    yield settings, app, str(secret)
    await runner.cleanup()


def standard_client_session(base: str, client_id: str, secret: str, path: str) -> dict[str, Any]:
    """What an operator's program does with authlib alone (blocking, as such programs are)."""
    metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    with OAuth2Session(client_id, secret, scope="data:read", token_endpoint_auth_method="client_secret_basic") as s:
        token = s.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        data = s.get(f"{base}{path}", headers={"X-Purpose": "credit_check"}, timeout=10)
    jwks = requests.get(metadata["jwks_uri"], timeout=10).json()
    return {"metadata": metadata, "token": token, "status": data.status_code, "headers": dict(data.headers),
            "body": data.json(), "jwks": jwks}


def verify_independently(access_token: str, jwks: dict[str, Any], issuer: str, audience: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA in favour of RFC 9864's name
        keys = KeySet.import_key_set(cast(Any, jwks))
        decoded = jwt.decode(access_token, keys, algorithms=["EdDSA", "ES256"])
    JWTClaimsRegistry(
        iss={"essential": True, "value": issuer}, aud={"essential": True, "value": audience},
        exp={"essential": True}, iat={"essential": True}, jti={"essential": True}, sub={"essential": True},
    ).validate(decoded.claims)
    return decoded


async def test_authlib_client_gets_a_token_and_penalties(served: Any, sample_code: str) -> None:
    """OAuth2Session (client_secret_basic) gets a token and reads penalties with an Audit-Entry."""
    settings, _app, secret = served
    base = settings.issuer
    got = await asyncio.to_thread(standard_client_session, base, "op", secret,
                                  f"/v1/entities/{sample_code}/penalties")
    assert got["metadata"]["issuer"] == base
    assert "client_secret_basic" in got["metadata"]["token_endpoint_auth_methods_supported"]
    assert got["token"]["token_type"].lower() == "bearer" and 0 < got["token"]["expires_in"] <= 600
    assert got["status"] == 200, got["body"]
    assert int(got["headers"]["Audit-Entry"]) >= 0
    assert got["body"]["records"]
    assert all("legal_representative_id_number" not in r for r in got["body"]["records"])


async def test_token_verifies_with_joserfc_against_the_published_jwks(served: Any, sample_code: str) -> None:
    """The access token is an RFC 9068 JWT that joserfc verifies with the keys at jwks_uri."""
    settings, _app, secret = served
    got = await asyncio.to_thread(standard_client_session, settings.issuer, "op", secret,
                                  f"/v1/entities/{sample_code}")
    access_token = got["token"]["access_token"]
    decoded = verify_independently(access_token, got["jwks"], settings.issuer, settings.audience)
    assert decoded.header["typ"].lower() in ("at+jwt", "application/at+jwt")
    assert decoded.header["alg"] in ("EdDSA", "ES256")
    assert decoded.header["kid"] in {key["kid"] for key in got["jwks"]["keys"]}
    assert decoded.claims["client_id"] == "op" and "data:read" in decoded.claims["scope"].split()
    assert decoded.claims["exp"] - decoded.claims["iat"] <= 600
    assert all("d" not in key for key in got["jwks"]["keys"]), "the JWKS must publish public keys only"
    # The independent check is a real one: one flipped signature bit and joserfc refuses it.
    head, payload, signature = access_token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(BadSignatureError):
        verify_independently(f"{head}.{payload}.{flipped}", got["jwks"], settings.issuer, settings.audience)
