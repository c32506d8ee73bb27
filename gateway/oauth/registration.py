"""Checks on settings and client registrations, each failure naming what is wrong."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from authlib.common.security import is_secure_transport
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from credcore.errors import ConfigError, InvalidParameter

from .models import AUTH_METHODS

# URL-safe, so a client_id can sit in an admin path (/admin/operators/{client_id}).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")  # RFC 6749 §3.3 scope-token
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def check_issuer(issuer: str) -> None:
    parts = urlsplit(issuer)
    # authlib refuses plain http except on loopback (RFC 6749 §3.2 requires TLS).
    if not is_secure_transport(issuer):
        raise ConfigError("issuer: must be an https URL (or http on a loopback address)")
    # The endpoints are mounted at fixed paths from the root, so the issuer has no path.
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("issuer: must be scheme://host[:port] with no path, query or fragment")


def check_auth_methods(auth_methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(auth_methods))
    if not methods or any(method not in AUTH_METHODS for method in methods):
        raise InvalidParameter(
            "auth_methods", f"Client authentication methods are some of {AUTH_METHODS}."
        )
    return methods


def check_scope(scope: str, supported: Sequence[str]) -> frozenset[str]:
    scopes = frozenset(scope.split())
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in scopes):
        raise InvalidParameter("scope", "A scope is space-separated RFC 6749 scope tokens.")
    if supported and not scopes <= set(supported):
        extra = ", ".join(sorted(scopes - set(supported)))
        raise InvalidParameter("scope", f"Scopes not supported by this server: {extra}.")
    return scopes


def check_name(name: str) -> None:
    if not name or len(name) > 256:
        raise InvalidParameter("name", "The client name must be 1 to 256 characters.")


def check_client_id(client_id: str) -> None:
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidParameter("client_id", "A client_id is 1-128 of A-Z a-z 0-9 . _ ~ -.")


def check_public_jwks(value: dict[str, Any]) -> None:
    """A client's JWK Set: asymmetric public keys only, well formed."""
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidParameter("jwks", "The JWK Set needs a non-empty 'keys' array.")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("OKP", "EC", "RSA"):
            raise InvalidParameter("jwks", "Only OKP, EC and RSA public keys are accepted.")
        if any(name in key for name in _PRIVATE_JWK_MEMBERS):
            raise InvalidParameter("jwks", "The JWK Set holds private key material.")
    try:
        KeySet.import_key_set(value)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidParameter("jwks", "The JWK Set is malformed.") from exc
