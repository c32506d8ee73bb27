"""A partner region held by a test: its own Ed25519 keys, its seq counter, records it signs.

It stands for the other side of the exchange (another region's gateway), not for anything of
ours: records are signed with the production signer (`crosstab.records.sign_record`) or, for
malformed ones, byte by byte. Import it explicitly (`from tests.crosstab.partner_kit import
PartnerKit`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey

from credcore.clock import CST, Clock
from credcore.codes import uscc_check_char
from crosstab.records import sign_record


def uscc(body17: str) -> str:
    """A valid USCC from its first 17 characters."""
    return body17 + uscc_check_char(body17)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HUAWEI = "914403001922038216"
T0 = dt.datetime(2025, 11, 25, 10, 0, tzinfo=CST)


class PartnerKit:
    """Region `region` as seen from outside: `record(...)` signs its next record."""

    def __init__(self, region: str, clock: Clock) -> None:
        self.region = region
        self.clock = clock
        self.keys: dict[str, OKPKey] = {}
        self.kid = self.new_key()
        self.seq = 0

    def new_key(self) -> str:
        kid = f"{self.region}-k{len(self.keys) + 1}"
        self.keys[kid] = OKPKey.generate_key("Ed25519", private=True)
        return kid

    def jwks(self, *kids: str) -> dict[str, Any]:
        """The public JWK Set with the given keys (default: the current one)."""
        out = []
        for kid in kids or (self.kid,):
            jwk = dict(self.keys[kid].as_dict(private=False))
            jwk.update(kid=kid, use="sig", alg="EdDSA")
            out.append(jwk)
        return {"keys": out}

    def payload(self, **over: Any) -> dict[str, Any]:
        """The next evaluation payload (tax credit grade A); keyword arguments override, None drops."""
        self.seq += 1
        base: dict[str, Any] = {
            "iss": self.region,
            "jti": f"{self.region}-{self.seq}",
            "iat": int(self.clock.time()) - 60,
            "seq": self.seq,
            "type": "evaluation",
            "sub": HUAWEI,
            "subject_name": "华为技术有限公司",
            "scheme": "tax_credit",
            "grade": "A",
            "valid_from": "2025-04-01",
            "valid_until": "2026-03-31",
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, payload: dict[str, Any], kid: str | None = None) -> str:
        kid = kid or self.kid
        return sign_record(payload, self.keys[kid], kid)

    def record(self, kid: str | None = None, **over: Any) -> str:
        return self.sign(self.payload(**over), kid)

    def raw(self, header: dict[str, Any], payload: bytes, kid: str | None = None) -> str:
        """Sign arbitrary payload bytes, bypassing every check of `sign_record`."""
        private = self.keys[kid or self.kid].private_key
        if not isinstance(private, Ed25519PrivateKey):
            raise TypeError("an Ed25519 key signs")
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}".encode()
        return f"{signing_input.decode()}.{b64(private.sign(signing_input))}"


class GatewayKit:
    """Drives one in-process gateway (a tests/conftest.py Harness) as admin, partner and auditor."""

    def __init__(self, harness: Any) -> None:
        self.h = harness

    async def bearer(self, client_id: str, scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.h.token(client_id, scope)}"}

    async def register_raw(self, body: Any) -> tuple[int, Any]:
        """POST /admin/partners as the admin; (status, JSON body)."""
        headers = await self.bearer("admin")
        if isinstance(body, bytes):
            resp = await self.h.client.post("/admin/partners", data=body, headers=headers)
        else:
            resp = await self.h.client.post("/admin/partners", json=body, headers=headers)
        return resp.status, await resp.json()

    async def register(self, partner: PartnerKit, *, types: tuple[str, ...] | None = None,
                       domestic: bool = False, jwks: dict[str, Any] | None = None) -> str:
        """Register `partner` and remember its new client's secret; return the client id."""
        body: dict[str, Any] = {
            "region": partner.region,
            "name": f"Region {partner.region}",
            "jwks": jwks or partner.jwks(),
            "record_types": list(types or ("evaluation", "joint_reward", "joint_punishment", "revocation")),
        }
        if domestic:
            body["domestic"] = True
        status, answer = await self.register_raw(body)
        assert status == 201, answer
        self.h.secrets[answer["client_id"]] = answer["client_secret"]
        return str(answer["client_id"])

    async def push(self, client_id: str | None, records: Any, **kwargs: Any) -> tuple[Any, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if client_id is not None:
            headers.update(await self.bearer(client_id))
        if "data" not in kwargs:
            kwargs["json"] = {"records": records}
        resp = await self.h.client.post("/crosstab/v1/inbox", headers=headers, **kwargs)
        return resp, await resp.json()

    async def pull(self, client_id: str | None, query: str = "") -> tuple[Any, Any]:
        headers = await self.bearer(client_id) if client_id is not None else {}
        resp = await self.h.client.get(f"/crosstab/v1/outbox{query}", headers=headers)
        return resp, await resp.json()

    async def entry(self, index: int | str) -> dict[str, Any]:
        """The audit entry at `index`, read back through GET /audit/entries."""
        i = int(index)
        resp = await self.h.client.get(f"/audit/entries?start={i}&end={i + 1}", headers=await self.bearer("auditor"))
        body = await resp.json()
        assert resp.status == 200, body
        return dict(json.loads(base64.b64decode(body["entries"][0]["leaf"])))
