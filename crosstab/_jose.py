"""The JOSE plumbing under crosstab records: one private joserfc registry, strict decoders.

Why a private registry. joserfc's global registry changes between releases: 1.6 and later also
know RFC 9864's fully specified `Ed25519`, and warn (SecurityWarning) on the polymorphic
`EdDSA`; older releases know only `EdDSA`. The contract needs both names, bound to Ed25519 keys
only (an Ed448 key under `EdDSA` is refused), and nothing else: no `none`, no HMAC, no RSA. So
the registry below holds exactly two algorithm objects of ours and never touches joserfc's
class-level table, whatever version is installed.

Why strict decoders. The header and payload are decoded here before any key is chosen (the
contract checks issuer and kid before the signature), so these decoders are the parser an
attacker talks to: they refuse duplicate JSON members (two parsers could read different
values), NaN and Infinity, padding, non-alphabet and non-canonical base64url.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.errors import InvalidKeyCurveError, InvalidKeyTypeError, UnsupportedKeyUseError
from joserfc.jwk import OKPKey
from joserfc.jws import JWSAlgModel, JWSRegistry

ALGORITHMS: tuple[str, ...] = ("EdDSA", "Ed25519")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class _Ed25519Only(JWSAlgModel):
    """Ed25519 signatures under a given `alg` name; other curves are refused."""

    key_type = "OKP"

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"Ed25519 signatures (alg {name})"

    def check_key(self, key: Any) -> None:
        # Not super().check_key: that insists the JWK's own `alg` equals the header's, and a
        # partner may publish `"alg": "EdDSA"` yet sign under `Ed25519` (the same algorithm).
        if key.key_type != "OKP":
            raise InvalidKeyTypeError(f"Algorithm '{self.name}' requires an OKP key")
        if key.curve_name != "Ed25519":
            raise InvalidKeyCurveError(f"Algorithm '{self.name}' requires an Ed25519 key")
        use = key.get("use")
        if use is not None and use != "sig":
            raise UnsupportedKeyUseError("The key is not for signatures")
        if key.get("alg") not in (None, *ALGORITHMS):
            raise InvalidKeyTypeError(f"The key is bound to algorithm {key.get('alg')!r}")

    def sign(self, msg: bytes, key: Any) -> bytes:
        op_key = key.get_op_key("sign")
        if not isinstance(op_key, Ed25519PrivateKey):
            raise InvalidKeyTypeError("Signing needs an Ed25519 private key")
        return op_key.sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        op_key = key.get_op_key("verify")
        if not isinstance(op_key, Ed25519PublicKey):
            raise InvalidKeyTypeError("Verifying needs an Ed25519 public key")
        try:
            op_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class _CrosstabRegistry(JWSRegistry):
    """A JWS registry that knows only the two names of Ed25519 (instance-level table)."""

    def __init__(self) -> None:
        super().__init__(algorithms=list(ALGORITHMS), strict_check_header=True)
        # Shadows the class-level table shared by every JWSRegistry in the process.
        self.algorithms = {name: _Ed25519Only(name) for name in ALGORITHMS}
        self.recommended = list(ALGORITHMS)


REGISTRY = _CrosstabRegistry()


def b64url_decode(segment: str) -> bytes:
    """Decode unpadded base64url; raise ValueError on padding, bad characters or length."""
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    # SECURITY: the last character may carry unused bits; two spellings of one signature would
    # make two different JWS strings verify, so only the canonical spelling is accepted.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != segment:
        raise ValueError("not canonical base64url")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(data: bytes) -> dict[str, Any]:
    """Parse UTF-8 JSON that must be an object; raise ValueError otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError as exc:
        # SECURITY: a 16 KiB payload of "[[[[..." exceeds the recursion limit; unchecked, it
        # escaped the per-record checks and failed the whole batch with a 500.
        raise ValueError("nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def import_private_key(key: OKPKey | dict[str, Any]) -> OKPKey:
    """An Ed25519 private key as a joserfc OKPKey (from a JWK dict or an OKPKey)."""
    okp = key if isinstance(key, OKPKey) else OKPKey.import_key(dict(key))
    if okp.curve_name != "Ed25519" or not okp.is_private:
        raise ValueError("a crosstab signing key is an Ed25519 private key")
    return okp


def import_public_key(jwk: OKPKey | dict[str, Any]) -> OKPKey:
    """An Ed25519 public key; a private JWK is refused, so secrets never enter the registry."""
    if isinstance(jwk, OKPKey):
        okp = jwk
    else:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("a partner key is an OKP JWK on curve Ed25519")
        if "d" in jwk:
            raise ValueError("a partner key must be public: the JWK carries a private part")
        okp = OKPKey.import_key(dict(jwk))
    if okp.curve_name != "Ed25519":
        raise ValueError("a partner key is an Ed25519 key")
    return okp


def public_jwk(key: OKPKey, kid: str, alg: str = "EdDSA") -> dict[str, Any]:
    """The public JWK as published in jwks.json (its alg is the one we sign under)."""
    out: dict[str, Any] = dict(key.as_dict(private=False))
    out.update({"kid": kid, "use": "sig", "alg": alg})
    return out
