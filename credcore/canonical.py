"""Canonical JSON (RFC 8785, JCS): the one byte form used for audit leaves and digests."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (dicts with str keys, lists, str, int, float, bool, None)."""
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_json(value: Any) -> str:
    """Lowercase hex SHA-256 of the canonical form: the same for any re-serialization."""
    return sha256_hex(canonical_json(value))
