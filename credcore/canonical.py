"""Canonical JSON (RFC 8785, JCS): the one byte form used for audit leaves and digests.

The `rfc8785` package is the reference; it is exact but slow in pure Python (~60 µs for a
credit record), and the gateway canonicalises every audit entry and released record. For the
values credgate produces, JCS is what `json.dumps(sort_keys=True, ensure_ascii=False)` writes,
except for numbers and for keys outside the Basic Multilingual Plane (JCS sorts UTF-16 code
units). `canonical_json` normalises integral floats to ints, keeps the floats whose shortest
repr is already the ECMAScript form, and hands everything else to `rfc8785`. A property test
(tests/credcore/test_canonical.py) holds the fast path equal to the reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import rfc8785

_MAX_SAFE = 2**53 - 1
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # keys JCS sorts by UTF-16, not code point


class _Slow(Exception):
    """The value needs the reference encoder."""


def _normalise(value: Any) -> Any:
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _Slow
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Slow
        if value.is_integer():
            if abs(value) <= _MAX_SAFE:
                return int(value)  # ECMAScript writes 2.0 as "2"
            raise _Slow
        if 1e-4 <= abs(value) < 1e16:
            return value  # here Python's repr and ECMAScript's shortest form agree
        raise _Slow
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or (not key.isascii() and _ASTRAL.search(key)):
                raise _Slow
            out[key] = _normalise(item)
        return out
    if isinstance(value, list | tuple):
        return [_normalise(item) for item in value]
    raise _Slow


def _as_doubles(value: Any) -> Any:
    """JCS numbers are IEEE doubles (RFC 8785 §3.2.2.3): an integer beyond 2**53 stands for the
    nearest double, as it would once parsed by ECMAScript. Without this, the bytes JCS writes for
    a float such as 2.0**53 or 3.9e16 parse back as a Python int that the reference refuses, and a
    leaf would fail its own verification. An integer too large for any double is still refused."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE:
        try:
            return float(value)
        except OverflowError:
            return value
    if isinstance(value, dict):
        return {key: _as_doubles(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_doubles(item) for item in value]
    return value


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of `value` (dicts with str keys, lists, str, int, float, bool, None).

    Raises ValueError for what JCS cannot represent (NaN, infinities, integers beyond any double,
    lone surrogates)."""
    try:
        text = json.dumps(_normalise(value), ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except (_Slow, UnicodeEncodeError):
        return rfc8785.dumps(_as_doubles(value))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_json(value: Any) -> str:
    """Lowercase hex SHA-256 of the canonical form: the same for any re-serialization."""
    return sha256_hex(canonical_json(value))
