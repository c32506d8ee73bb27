"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A note is its text, a blank line, then signature lines `— <name> <base64(key id || sig)>`.
A key is named by (name, 4-byte key id), the id being
`SHA-256(name || 0x0A || 0x01 || public key)[:4]`. Verification follows the spec's rules:
signatures by unknown keys are ignored (this is what lets an old and a new key sign the
same note during a rotation), a signature by a known key must verify or the whole note
is refused, and a note that no known key verified is refused. An empty verifier list
therefore refuses everything.

Key strings are those of golang.org/x/mod/sumdb/note, which the shared test vector uses:
verifier `<name>+<8 hex key id>+<base64(0x01 || public key)>`, signer
`PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`.
`parse_verifier_key` reads any such verifier key for a given signature type byte, so
audit.cosignature parses its 0x04 witness keys here too rather than with a copy.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from credcore.errors import ConfigError, VerificationError

ALG_ED25519 = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash, space
# The spec asks verifiers to cap the signature count and to accept at least 16.
MAX_SIGNATURES = 100


def key_id(name: str, public_key: bytes, alg: bytes = ALG_ED25519) -> bytes:
    """The 4-byte key id of a key named `name` with signature type byte `alg`
    (signed-note §Ed25519 signatures; tlog-cosignature uses the same formula with 0x04)."""
    return hashlib.sha256(name.encode() + b"\n" + alg + public_key).digest()[:4]


def is_valid_name(name: str) -> bool:
    """A key name is non-empty and has no '+' (the key string separator) and no space."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _text_problem(text: str) -> str | None:
    """Why `text` cannot be (part of) a note, or None: notes are UTF-8 with no control
    characters but newline."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if any(c < " " and c != "\n" for c in text):
        return "it contains a control character other than newline"
    return None


def b64decode_strict(value: str) -> bytes:
    """Strict standard base64: padding required, no characters outside the alphabet.
    Raises ValueError (binascii.Error, or UnicodeEncodeError for non-ASCII) if malformed."""
    return base64.b64decode(value.encode("ascii"), validate=True)


def parse_verifier_key(vkey: str, alg: bytes, label: str = "verifier key",
                       kind: str = "Ed25519") -> tuple[str, bytes, bytes]:
    """(name, key id, raw 32-byte public key) from `<name>+<8 hex key id>+<base64(alg || key)>`.

    VerificationError if malformed, of another type byte than `alg`, or with a key id that does
    not match; `label` and `kind` only word the messages ("witness key", "Ed25519 cosignature/v1")."""
    # The base64 part may itself contain '+', so split from the left only twice.
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not is_valid_name(parts[0]):
        raise VerificationError(f"{label} is not <name>+<key id>+<base64 key>")
    name, id_hex, key_b64 = parts
    try:
        raw = b64decode_strict(key_b64)
        ident = bytes.fromhex(id_hex) if len(id_hex) == 8 else b""
    except ValueError:  # binascii.Error is a ValueError
        raise VerificationError(f"{label} for {name} is not valid hex/base64") from None
    if len(raw) != 33 or raw[:1] != alg:
        raise VerificationError(f"{label} for {name} is not an {kind} (0x{alg.hex()}) key")
    if ident != key_id(name, raw[1:], alg):
        raise VerificationError(f"{label} for {name} has a wrong key id {id_hex!r}")
    return name, ident, raw[1:]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """One trusted key: a name, its key id and its Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def from_key(cls, vkey: str) -> NoteVerifier:
        """Parse `<name>+<8 hex key id>+<base64(0x01 || public key)>`; VerificationError if bad."""
        name, ident, raw = parse_verifier_key(vkey, ALG_ED25519)
        return cls(name, ident, Ed25519PublicKey.from_public_bytes(raw))

    @property
    def verifier_key(self) -> str:
        raw = ALG_ED25519 + _raw_public(self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"


class NoteSigner:
    """Signs notes with one Ed25519 key under `name` (for checkpoints: the log's origin)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_name(name):
            raise ValueError(f"key name {name!r} is empty or has a space or '+'")
        self.name = name
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(name, _raw_public(self.public_key))

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.key_id, self.public_key)

    @property
    def verifier_key(self) -> str:
        return self.verifier.verifier_key

    @property
    def private_key_seed(self) -> bytes:
        """The raw 32-byte Ed25519 seed (stored in audit_keys; a secret)."""
        return self._private_key.private_bytes_raw()

    @property
    def signer_key(self) -> str:
        """The secret key string that `parse_signer_key` reads back; store it as a secret."""
        seed = self._private_key.private_bytes_raw()
        raw = base64.b64encode(ALG_ED25519 + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{raw}"

    def signature_line(self, text: str) -> str:
        sig = self._private_key.sign(text.encode())
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + sig).decode()}\n"

    def sign(self, text: str) -> str:
        """The signed note for `text`, which must end in a newline."""
        return sign_note(text, [self])


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """`text` signed by every signer in order, e.g. an old and a new key during rotation."""
    problem = _text_problem(text) or ("" if text.endswith("\n") else "it does not end in newline")
    if problem:
        raise ValueError(f"cannot sign the note text: {problem}")
    if not signers:
        raise ValueError("a note needs at least one signer")
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


def parse_signer_key(skey: str) -> NoteSigner:
    """Read `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`; ConfigError if malformed."""
    parts = skey.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise ConfigError("signer key is not PRIVATE+KEY+<name>+<key id>+<base64 key>")
    name, id_hex, key_b64 = parts[2:]
    try:
        raw = b64decode_strict(key_b64)
    except ValueError:  # binascii.Error is a ValueError
        raise ConfigError(f"signer key for {name} is not valid base64") from None
    if len(raw) != 33 or raw[:1] != ALG_ED25519 or not is_valid_name(name):
        raise ConfigError(f"signer key for {name!r} is not a named Ed25519 (0x01) key")
    signer = NoteSigner(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if signer.key_id.hex() != id_hex.lower():
        raise ConfigError(f"signer key for {name} has a wrong key id {id_hex!r}")
    return signer


def generate_signer(name: str, token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> NoteSigner:
    """A new signer; `token_bytes` is injected so tests can make it deterministic."""
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(token_bytes(32)))


@dataclass(frozen=True)
class NoteVerification:
    """A verified note: its text (ending in newline) and the names of the keys that verified."""

    text: str
    names: tuple[str, ...]


def _malformed(why: str) -> VerificationError:
    return VerificationError(f"signed note is malformed: {why}")


def verify_note(note: str, verifiers: Sequence[NoteVerifier]) -> NoteVerification:
    """Open a signed note; VerificationError unless a known key verifies and none fails."""
    problem = _text_problem(note)
    if problem:
        raise _malformed(problem)
    # The text may hold blank lines itself: the last one separates the signatures.
    split = note.rfind("\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise _malformed("the signature block is empty or does not end in newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"more than {MAX_SIGNATURES} signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    seen: set[tuple[str, bytes]] = set()
    names: list[str] = []
    for n, line in enumerate(lines, 1):
        name, _, sig_b64 = line.removeprefix(SIG_PREFIX).partition(" ")
        try:
            sig = b64decode_strict(sig_b64)
        except ValueError:  # binascii.Error is a ValueError
            sig = b""
        if not line.startswith(SIG_PREFIX) or not is_valid_name(name) or len(sig) < 5:
            raise _malformed(f"signature line {n} is not '\u2014 <name> <base64 signature>'")
        verifier = known.get((name, sig[:4]))
        if verifier is None or (name, sig[:4]) in seen:
            continue  # unknown keys are ignored; a repeated signature adds nothing
        seen.add((name, sig[:4]))
        try:
            verifier.public_key.verify(sig[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(
                f"signature by {name} (key id {sig[:4].hex()}) does not verify: "
                "the note was altered or the signature forged"
            ) from None
        names.append(name)
    if not names:
        trusted = ", ".join(sorted(f"{n}+{i.hex()}" for n, i in known)) or "none configured"
        raise VerificationError(f"signed note has no signature by a trusted key ({trusted})")
    return NoteVerification(text, tuple(names))
