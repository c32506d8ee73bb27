"""C2SP tlog-witness (https://c2sp.org/tlog-witness): the add-checkpoint protocol, with no I/O.

A request body is an old size line `old <N>`, up to 63 base64 consistency proof lines, an empty
line, then the log's signed checkpoint. The witness answers, in the spec's order of checks:

- 400: the body is malformed, the old size is above the checkpoint's size, or a proof comes
  with old size 0;
- 404: the checkpoint's origin is not a log this witness is configured for;
- 403: no signature by a trusted key of that log verifies (a bad one by a trusted key too);
- 409: the old size is not the size this witness last cosigned (the body is that size, as
  `text/x.tlog.size`), or the same size comes with another root (a fork);
- 422: the consistency proof from the old size does not verify (a fork, or a rewritten past);
- 200: one cosignature line per witness key (C2SP tlog-cosignature v1).

So a log that rolls back (asks with a smaller old size) gets 409 and the size it must extend,
and a log that forks gets 409 or 422: no honest witness ever cosigns two inconsistent trees.
`Witness.check` returns the new state; the caller must store it atomically with the compare of
the old size (compare-and-swap), then answer with `Witness.cosign`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from audit.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from audit.cosignature import CosignatureSigner
from audit.note import NoteVerifier
from audit.rfc9162 import HASH_SIZE, verify_consistency
from credcore.errors import VerificationError

MAX_PROOF_LINES = 63
MAX_BODY = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")


class WitnessError(Exception):
    """A refusal with the HTTP status the spec assigns; `body` is what to answer."""

    def __init__(self, status: int, message: str, *, body: str | None = None,
                 content_type: str = "text/plain") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body if body is not None else message + "\n"
        self.content_type = content_type


def conflict(size: int, message: str) -> WitnessError:
    return WitnessError(409, message, body=f"{size}\n", content_type=SIZE_CONTENT_TYPE)


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: str


@dataclass(frozen=True)
class WitnessState:
    """The latest checkpoint a witness cosigned for one log."""

    size: int
    root: bytes
    note: str


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body; WitnessError(400) naming what is wrong."""
    if len(body) > MAX_BODY:
        raise WitnessError(400, f"the request body is larger than {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessError(400, "the request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessError(400, "the request has no empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if not match:
        raise WitnessError(400, "the first line must be 'old <size>' (decimal, no leading zeros)")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessError(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for n, line in enumerate(proof_lines, 1):
        try:
            value = base64.b64decode(line.encode("ascii"), validate=True)
        except (ValueError, binascii.Error, UnicodeEncodeError):
            value = b""
        if len(value) != HASH_SIZE:
            raise WitnessError(400, f"consistency proof line {n} is not the base64 of a {HASH_SIZE}-byte hash")
        proof.append(value)
    return AddCheckpoint(int(match.group(1)), proof, note)


class Witness:
    """The checks of add-checkpoint for the logs in `logs` (origin -> trusted note keys)."""

    def __init__(self, signer: CosignatureSigner, logs: Mapping[str, Sequence[NoteVerifier]]) -> None:
        self.signer = signer
        self.logs = {origin: list(keys) for origin, keys in logs.items() if keys}

    def check(self, request: AddCheckpoint, state: WitnessState | None) -> Checkpoint:
        """The checkpoint to cosign, given the stored state of its log; WitnessError otherwise."""
        origin = request.note.split("\n", 1)[0]
        keys = self.logs.get(origin)
        if keys is None:
            raise WitnessError(404, f"this witness does not know the log {origin[:200]!r}")
        try:
            cp = verify_checkpoint(request.note, keys)
        except VerificationError as exc:
            raise WitnessError(403, f"the checkpoint is not signed by a trusted key of {origin}: "
                                    f"{exc.description}") from None
        old = request.old_size
        if old > cp.size:
            raise WitnessError(400, f"the old size {old} is above the checkpoint size {cp.size}")
        latest = state.size if state is not None else 0
        if old != latest:
            raise conflict(latest, f"the old size {old} is not the size this witness last cosigned ({latest})")
        if old == 0 or state is None:
            if request.proof:
                raise WitnessError(400, "a consistency proof from size 0 must be empty")
            if state is not None and cp.size == 0 and cp.root != state.root:
                raise conflict(latest, "the log has two different roots for size 0")
            return cp
        if old == cp.size:
            if cp.root != state.root:
                raise conflict(latest, f"the log has two different roots for size {old}: it forked")
            return cp
        try:
            verify_consistency(old, cp.size, state.root, cp.root, request.proof)
        except VerificationError as exc:
            raise WitnessError(422, f"the checkpoint of size {cp.size} is not consistent with the one of size "
                                    f"{old} this witness cosigned: {exc.description}") from None
        return cp

    def cosign(self, note: str, timestamp: int) -> str:
        """The cosignature line(s) for the verified checkpoint `note` at POSIX `timestamp`."""
        text = note[: note.rfind("\n\n") + 1]
        parse_checkpoint(text)
        return self.signer.cosign(text, timestamp)


def new_state(cp: Checkpoint, note: str) -> WitnessState:
    return WitnessState(cp.size, cp.root, note)
