"""The authorization server's signing keys (Ed25519, JWS `alg: EdDSA`) and its JWK Set.

A key's `kid` is its RFC 7638 thumbprint, so the same key always has the same id. Private
keys live in `oauth_signing_keys` as PKCS#8 PEM and never leave this module except to sign;
`jwks()` publishes public parameters only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import OKPKey
from joserfc.jws import JWSAlgModel, JWSRegistry

ACCESS_TOKEN_ALG = "EdDSA"


class PinnedJWSRegistry(JWSRegistry):
    """A joserfc registry that accepts exactly the algorithms it is given, and no others.

    joserfc flags `EdDSA` with a SecurityWarning because RFC 9864 prefers the fully specified
    `Ed25519`; the contract names `EdDSA` (RFC 8037) because that is what deployed libraries
    verify. The allow-list here is explicit, so the warning would add noise and no safety.
    """

    def __init__(self, algorithms: Collection[str]) -> None:
        if not algorithms:
            raise ValueError("an empty algorithm allow-list would allow nothing to verify")
        super().__init__(algorithms=list(algorithms))

    def get_alg(self, name: str) -> JWSAlgModel:
        if name not in (self.allowed or ()) or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


ACCESS_TOKEN_REGISTRY = PinnedJWSRegistry([ACCESS_TOKEN_ALG])


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair with its thumbprint kid."""

    kid: str
    private: OKPKey
    public: OKPKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_private(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str) -> SigningKey:
        raw = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
        if not isinstance(raw, Ed25519PrivateKey):
            raise ValueError("a stored signing key is not an Ed25519 private key")
        return cls.from_private(raw)

    @classmethod
    def from_private(cls, raw: Ed25519PrivateKey) -> SigningKey:
        private = OKPKey.import_key(raw)
        public = OKPKey.import_key(raw.public_key())
        kid = public.thumbprint()
        return cls(kid=kid, private=private, public=public)

    def private_pem(self) -> str:
        raw = self.private.private_key
        if not isinstance(raw, Ed25519PrivateKey):  # from_private guarantees it
            raise TypeError("not an Ed25519 private key")
        return raw.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def public_jwk(self) -> dict[str, Any]:
        jwk = dict(self.public.as_dict(private=False))
        jwk.update(kid=self.kid, use="sig", alg=ACCESS_TOKEN_ALG)
        return jwk

    def sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        """A compact JWS of `claims` with `alg` and `kid` set from this key."""
        full = {**header, "alg": ACCESS_TOKEN_ALG, "kid": self.kid}
        return jwt.encode(full, dict(claims), self.private, registry=ACCESS_TOKEN_REGISTRY)


def jwks(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The RFC 7517 JWK Set document: public parameters only."""
    return {"keys": [key.public_jwk() for key in keys]}
