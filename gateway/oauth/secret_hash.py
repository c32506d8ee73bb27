"""Client secrets at rest: scrypt with a per-secret salt, compared in constant time.

scrypt is slow on purpose (a leaked table must be expensive to brute-force), which makes it
too slow to run on every token request of a benchmark. `VerifiedSecrets` therefore remembers
successful verifications in memory, keyed by (client_id, SHA-256 of the presented secret) and
bound to the stored hash, so a changed secret is never matched by an old entry. Failures are
never remembered: each wrong guess costs the full KDF.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# n=2**14, r=8 is the interactive-login parameter set (RFC 7914 §2; ~16 MiB, tens of ms).
_N, _R, _P = 2**14, 8, 1
_LENGTH = 32
_SALT_BYTES = 16
_SCHEME = "scrypt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=_LENGTH, n=n, r=r, p=p).derive(secret.encode("utf-8"))


def hash_secret(secret: str, token_bytes: Callable[[int], bytes]) -> str:
    """The storable form `scrypt$n$r$p$salt$hash` of a client secret."""
    salt = token_bytes(_SALT_BYTES)
    digest = _derive(secret, salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the stored hash; a malformed stored value never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(digest)
        actual = _derive(secret, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class VerifiedSecrets:
    """A bounded memory of secrets that recently verified, so repeats skip the KDF."""

    def __init__(
        self,
        max_entries: int = 4096,
        kdf_check: Callable[[str, str], bool] = check_secret,
    ) -> None:
        self._max = max_entries
        self._kdf_check = kdf_check
        self._entries: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        # authlib runs in worker threads (see server.py), so updates are serialized
        self._lock = threading.Lock()

    @staticmethod
    def _key(client_id: str, secret: str) -> tuple[str, bytes]:
        return client_id, hashlib.sha256(secret.encode("utf-8")).digest()

    def check(self, client_id: str, secret: str, stored: str) -> bool:
        """Verify `secret` against `stored`, from memory when it verified before."""
        key = self._key(client_id, secret)
        with self._lock:
            remembered = self._entries.get(key)
        if remembered is not None and hmac.compare_digest(remembered, stored):
            return True
        if not self._kdf_check(secret, stored):
            return False
        with self._lock:
            self._entries[key] = stored
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return True
