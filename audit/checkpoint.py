"""C2SP tlog-checkpoints (https://c2sp.org/tlog-checkpoint): the signed head of the log.

The note text is three lines, each ending in a newline: the origin (the log's identity,
which credgate also uses as the name of the signing key), the tree size in decimal with
no leading zero, and the base64 RFC 9162 root hash; optional non-empty extension lines
may follow and are ignored. Parsing names the line that is wrong, so an auditor sees
which part of a served checkpoint is broken.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from audit.note import NoteSigner, NoteVerifier, sign_note, verify_note
from audit.rfc9162 import HASH_SIZE
from credcore.errors import VerificationError

# Tree sizes are uint64 in every tlog implementation; a larger one cannot be real.
MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: str.isdigit would accept other scripts


def _origin_problem(origin: str) -> str | None:
    if not origin:
        return "is empty"
    if any(c < " " for c in origin):
        return "contains a control character"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: which log (`origin`), how many leaves (`size`), and their MTH (`root`)."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        problem = _origin_problem(self.origin)
        if problem:
            raise ValueError(f"checkpoint origin {problem}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"checkpoint size {self.size} is not a uint64")
        if len(self.root) != HASH_SIZE:
            raise ValueError(f"checkpoint root is {len(self.root)} bytes, not {HASH_SIZE}")


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint note text: origin, size and base64 root, each ending in a newline."""
    return f"{cp.origin}\n{cp.size}\n{base64.b64encode(cp.root).decode()}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text; VerificationError naming the first bad line."""
    if not text.endswith("\n"):
        raise VerificationError("checkpoint text does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError(f"checkpoint has {len(lines)} lines; it needs origin, size, root")
    origin, size_line, root_line, *extensions = lines
    problem = _origin_problem(origin)
    if problem:
        raise VerificationError(f"checkpoint line 1 (origin) {problem}")
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise VerificationError(
            f"checkpoint line 2 (tree size) {size_line!r} is not a decimal uint64 without leading zeros"
        )
    try:
        root = base64.b64decode(root_line.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise VerificationError(f"checkpoint line 3 (root hash) {root_line!r} is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_line:
        raise VerificationError(f"checkpoint line 3 (root hash) is not the base64 of a {HASH_SIZE}-byte hash")
    for n, line in enumerate(extensions, 4):
        if not line:
            raise VerificationError(f"checkpoint line {n} (extension) is empty")
    return Checkpoint(origin, int(size_line), root)


def sign_checkpoint(cp: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """The signed note served at /audit/checkpoint; every signer must be named as the origin."""
    for signer in signers:
        if signer.name != cp.origin:
            raise ValueError(f"key {signer.name!r} cannot sign checkpoints of {cp.origin!r}")
    return sign_note(format_checkpoint(cp), signers)


def verify_checkpoint(note: str, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """Verify a signed checkpoint and parse it; the origin must name a key that verified it."""
    verified = verify_note(note, verifiers)
    cp = parse_checkpoint(verified.text)
    if cp.origin not in verified.names:
        raise VerificationError(
            f"checkpoint origin {cp.origin!r} is not the name of a key that signed it ({', '.join(verified.names)})"
        )
    return cp
