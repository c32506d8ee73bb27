"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature): Ed25519 cosignature/v1.

A cosignature is a signed-note signature line by a witness (cosigner) over a checkpoint:
`— <name> base64(key id || timestamp || signature)`, where
- the key id is `SHA-256(<name> || "\\n" || 0x04 || public key)[:4]` (0x04: cosignature/v1),
- the timestamp is a big-endian u64 of POSIX seconds, at most 2**63 - 1,
- the signature is Ed25519 over `cosignature/v1\\ntime <timestamp>\\n` followed by the whole
  checkpoint note text (with its final newline, without any signature line).
A cosigner's verifier key is the vkey `<name>+<8 hex key id>+<base64(0x04 || public key)>`;
the key id, key name and vkey rules are signed-note's, so audit.note's helpers parse them.

`verify_cosignatures` follows signed-note rules: lines by unknown keys are ignored; a line by a
known cosigner that does not verify refuses the note. `require_cosignatures` asks for N distinct
trusted cosigners: deny by default, so N >= 1 with no trusted witness key never passes.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.note import MAX_SIGNATURES, SIG_PREFIX, b64decode_strict, is_valid_name, key_id, parse_verifier_key
from credcore.errors import VerificationError

ALG_COSIGNATURE_V1 = b"\x04"
MAX_TIMESTAMP = 2**63 - 1
_SIG_LEN = 4 + 8 + 64


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def signed_message(text: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header line, time line, then the checkpoint note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True)
class CosignatureVerifier:
    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @classmethod
    def from_key(cls, vkey: str) -> CosignatureVerifier:
        """Parse `<name>+<8 hex key id>+<base64(0x04 || key)>`; VerificationError if malformed."""
        name, ident, raw = parse_verifier_key(vkey, ALG_COSIGNATURE_V1, "witness key", "Ed25519 cosignature/v1")
        return cls(name, ident, Ed25519PublicKey.from_public_bytes(raw))

    @property
    def verifier_key(self) -> str:
        raw = ALG_COSIGNATURE_V1 + self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"


class CosignatureSigner:
    """A witness's cosigning key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_name(name):
            raise ValueError(f"witness name {name!r} is empty or has a space or '+'")
        self.name = name
        self._private_key = private_key
        public = private_key.public_key()
        self.verifier = CosignatureVerifier(name, cosigner_key_id(name, public.public_bytes(
            Encoding.Raw, PublicFormat.Raw)), public)

    @property
    def verifier_key(self) -> str:
        return self.verifier.verifier_key

    @property
    def private_key_seed(self) -> bytes:
        return self._private_key.private_bytes_raw()

    def cosign(self, text: str, timestamp: int) -> str:
        """The signature line for checkpoint note `text` at POSIX time `timestamp`."""
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise ValueError("a cosignature timestamp is a u64 below 2**63")
        sig = self._private_key.sign(signed_message(text, timestamp))
        blob = self.verifier.key_id + struct.pack(">Q", timestamp) + sig
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class Cosignature:
    name: str
    key_id: bytes
    timestamp: int
    line: str


def split_note(note: str) -> tuple[str, list[str]]:
    """The text of a signed note (ending in newline) and its signature lines (with newlines)."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise VerificationError("signed note is malformed: no blank line before the signatures")
    lines = [line + "\n" for line in note[split + 2 : -1].split("\n")]
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"signed note is malformed: more than {MAX_SIGNATURES} signatures")
    return note[: split + 1], lines


def verify_cosignatures(note: str, witnesses: Sequence[CosignatureVerifier],
                        now: float | None = None) -> list[Cosignature]:
    """The valid cosignatures of `note` by trusted witnesses (one per witness key).

    A line by a trusted witness key that does not verify, or whose timestamp is in the future
    (when `now` is given), raises VerificationError; other lines are ignored."""
    text, lines = split_note(note)
    known = {(w.name, w.key_id): w for w in witnesses}
    found: dict[tuple[str, bytes], Cosignature] = {}
    for line in lines:
        name, _, sig_b64 = line[:-1].removeprefix(SIG_PREFIX).partition(" ")
        try:
            blob = b64decode_strict(sig_b64)
        except ValueError:  # binascii.Error, and UnicodeEncodeError for non-ASCII, are ValueErrors
            continue
        witness = known.get((name, blob[:4]))
        if witness is None or not line.startswith(SIG_PREFIX) or (name, blob[:4]) in found:
            continue
        if len(blob) != _SIG_LEN:
            raise VerificationError(f"cosignature by {name} is {len(blob)} bytes, not {_SIG_LEN}")
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        if timestamp > MAX_TIMESTAMP:
            raise VerificationError(f"cosignature by {name} has a timestamp beyond 2**63-1")
        try:
            witness.public_key.verify(blob[12:], signed_message(text, timestamp))
        except InvalidSignature:
            raise VerificationError(f"cosignature by witness {name} does not verify: the checkpoint was altered "
                                    "or the cosignature forged") from None
        if now is not None and timestamp > now + 60:
            raise VerificationError(f"cosignature by {name} is dated {timestamp}, in the future")
        found[(name, blob[:4])] = Cosignature(name, blob[:4], timestamp, line)
    return list(found.values())


def require_cosignatures(note: str, witnesses: Sequence[CosignatureVerifier], minimum: int,
                         now: float | None = None) -> list[Cosignature]:
    """At least `minimum` distinct trusted witnesses cosigned `note`; VerificationError otherwise."""
    if minimum < 1:
        raise ValueError("at least one cosignature must be required")
    cosigned = verify_cosignatures(note, witnesses, now)
    names = sorted({c.name for c in cosigned})
    if len(names) < minimum:
        have = ", ".join(names) or "none"
        raise VerificationError(
            f"the checkpoint has cosignatures from {len(names)} of the {len(witnesses)} trusted witnesses "
            f"({have}); {minimum} are required"
        )
    return cosigned
