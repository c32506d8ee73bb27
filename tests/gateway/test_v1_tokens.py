"""Bad tokens through /v1 (issue 2, "Bad input it must survive"): every one is refused 401
invalid_token with the RFC 6750 challenge, and the refusal is itself an audit entry."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from credcore.clock import FixedClock
from gateway.oauth.store import OAuthStore

START = dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC)
CHALLENGE = re.compile(r'Bearer error="invalid_token"(, error_description="[\x20\x21\x23-\x5b\x5d-\x7e]*")?')


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload))


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


async def audit_entry(harness: Any, index: int) -> dict[str, Any]:
    """The entry at `index`, read the way an auditor reads it: /audit/entries with audit:read."""
    token = await harness.token("auditor")
    resp = await harness.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                    headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    (item,) = (await resp.json())["entries"]
    assert item["index"] == index
    entry: dict[str, Any] = json.loads(base64.b64decode(item["leaf"]))
    return entry


async def assert_invalid_token(harness: Any, path: str, authorization: str | None) -> dict[str, Any]:
    headers = {"X-Purpose": "credit_check"}
    if authorization is not None:
        headers["Authorization"] = authorization
    resp = await harness.client.get(path, headers=headers)
    body = await resp.json()
    assert resp.status == 401, body
    assert body["error"] == "invalid_token" and body["error_description"], body
    assert "records" not in body
    # RFC 6750 §3: the challenge's error_description holds printable ASCII but '"' and '\\' only.
    assert CHALLENGE.fullmatch(resp.headers["WWW-Authenticate"]), resp.headers["WWW-Authenticate"]
    entry = await audit_entry(harness, int(resp.headers["Audit-Entry"]))
    assert (entry["decision"], entry["status"], entry["error"]) == ("deny", 401, "invalid_token")
    assert entry["fields"] == [] and entry["body_sha256"] == hashlib.sha256(await resp.read()).hexdigest()
    return entry


Forger = Callable[[Any, str], Awaitable[str]]


async def our_key(harness: Any) -> Ed25519PrivateKey:
    key = (await OAuthStore(harness.gw.engine).active_keys())[0].private.private_key
    assert isinstance(key, Ed25519PrivateKey)
    return key


async def missing(harness: Any, token: str) -> str | None:
    return None


async def not_bearer(harness: Any, token: str) -> str:
    return f"Basic {base64.b64encode(b'op:secret').decode()}"


async def malformed(harness: Any, token: str) -> str:
    return "Bearer not.a-jwt.at-all"


async def alg_none(harness: Any, token: str) -> str:
    header, claims = parts(token)
    return "Bearer " + compact({**header, "alg": "none"}, claims, lambda _data: b"")


async def alg_with_odd_characters(harness: Any, token: str) -> str:
    header, claims = parts(token)
    return "Bearer " + compact({**header, "alg": '中文"\r\nX-Injected: 1\\'}, claims, (await our_key(harness)).sign)


async def hs256_with_public_key(harness: Any, token: str) -> str:
    header, claims = parts(token)
    public = (await our_key(harness)).public_key()
    secret = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "Bearer " + compact({**header, "alg": "HS256"}, claims,
                               lambda data: hmac.new(secret, data, hashlib.sha256).digest())


async def foreign_key_under_our_kid(harness: Any, token: str) -> str:
    header, claims = parts(token)
    return "Bearer " + compact(header, claims, Ed25519PrivateKey.generate().sign)


async def tampered_payload(harness: Any, token: str) -> str:
    header_b64, _payload, signature = token.split(".")
    _, claims = parts(token)
    claims["scope"] = "data:read audit:read admin"
    return f"Bearer {header_b64}.{b64url(json.dumps(claims).encode())}.{signature}"


async def wrong_issuer(harness: Any, token: str) -> str:
    header, claims = parts(token)
    return "Bearer " + compact(header, {**claims, "iss": "https://evil.example"}, (await our_key(harness)).sign)


async def wrong_audience(harness: Any, token: str) -> str:
    header, claims = parts(token)
    return "Bearer " + compact(header, {**claims, "aud": "https://other.example/v1"}, (await our_key(harness)).sign)


async def revoked(harness: Any, token: str) -> str:
    basic = base64.b64encode(f"op:{harness.secrets['op']}".encode()).decode()
    resp = await harness.client.post("/oauth/revoke", data={"token": token},
                                     headers={"Authorization": f"Basic {basic}"})
    assert resp.status == 200, await resp.text()
    return f"Bearer {token}"


CASES = [missing, not_bearer, malformed, alg_none, alg_with_odd_characters, hs256_with_public_key,
         foreign_key_under_our_kid, tampered_payload, wrong_issuer, wrong_audience, revoked]


@pytest.mark.parametrize("forge", CASES, ids=[case.__name__ for case in CASES])
async def test_bad_token_is_refused_and_audited(make_gateway: Any, sample_code: str, forge: Forger) -> None:
    """Each bad token answers 401 invalid_token with a Bearer challenge and a deny entry."""
    harness = await make_gateway()
    good = await harness.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    ok = await harness.get(path, good)
    assert ok.status == 200, await ok.text()
    entry = await assert_invalid_token(harness, path, await forge(harness, good))
    assert entry["uscc"] == [sample_code]


async def test_forged_token_with_true_claims_is_accepted(make_gateway: Any, sample_code: str) -> None:
    """Control for the forgeries above: re-signing the true claims with our key is accepted."""
    harness = await make_gateway()
    header, claims = parts(await harness.token("op"))
    token = compact(header, claims, (await our_key(harness)).sign)
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", token)
    assert resp.status == 200, await resp.text()


async def test_expired_token_is_refused(make_gateway: Any, sample_code: str) -> None:
    """A token past exp (plus the allowed skew) is refused, judged by the injected clock."""
    clock = FixedClock(START)
    harness = await make_gateway(clock=clock)
    token = await harness.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    assert (await harness.get(path, token)).status == 200  # cached as verified
    _, claims = parts(token)
    clock.set(dt.datetime.fromtimestamp(claims["exp"] + 31, dt.UTC))
    entry = await assert_invalid_token(harness, path, f"Bearer {token}")
    assert "expired" in entry["reason"]


async def test_token_not_yet_valid_is_refused(make_gateway: Any, sample_code: str) -> None:
    """A token whose nbf/iat lies beyond the skew in the future is refused."""
    clock = FixedClock(START)
    harness = await make_gateway(clock=clock)
    token = await harness.token("op")
    clock.advance(-120)
    await assert_invalid_token(harness, f"/v1/entities/{sample_code}/penalties", f"Bearer {token}")


async def test_token_checked_after_route_and_code(make_gateway: Any) -> None:
    """A malformed code answers 400 even without a token: route and code come first."""
    harness = await make_gateway(operators=False)
    resp = await harness.get("/v1/entities/91440300192203821/penalties", None)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_uscc"
    assert "Audit-Entry" in resp.headers


async def test_token_without_data_scope_is_insufficient_scope(make_gateway: Any, sample_code: str) -> None:
    """A valid token that lacks data:read answers 403 insufficient_scope, audited as a deny."""
    harness = await make_gateway()
    token = await harness.token("auditor")
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", token)
    body = await resp.json()
    assert resp.status == 403 and body["error"] == "insufficient_scope", body
    assert resp.headers["WWW-Authenticate"].startswith('Bearer error="insufficient_scope"')
    entry = await audit_entry(harness, int(resp.headers["Audit-Entry"]))
    assert (entry["decision"], entry["status"], entry["client_id"]) == ("deny", 403, "auditor")
