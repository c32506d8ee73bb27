"""C2SP tlog-witness and tlog-cosignature: the add-checkpoint checks and answers, cosignature lines,
state kept in SQL across restarts and races, and a log that forks or rolls back refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import tables
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosigner_key_id,
    require_cosignatures,
    verify_cosignatures,
)
from audit.note import NoteSigner, generate_signer
from audit.rfc9162 import consistency_proof, leaf_hash, root_from_hashes
from audit.witness import (
    MAX_PROOF_LINES,
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessError,
    WitnessState,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from audit.witnessing import WitnessService
from credcore.clock import FixedClock
from credcore.db import make_engine
from credcore.errors import VerificationError

ORIGIN = "log.example/audit"
LOG = generate_signer(ORIGIN, token_bytes=lambda n: b"\x07" * n)
WITNESS = CosignatureSigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
OTHER = CosignatureSigner("witness.example/w2", Ed25519PrivateKey.from_private_bytes(b"\x0a" * 32))
HASHES = [leaf_hash(b"leaf %d" % i) for i in range(64)]
FORK = [leaf_hash(b"forked %d" % i) for i in range(64)]


def note_of(size: int, hashes: list[bytes] = HASHES, signer: NoteSigner = LOG) -> str:
    return sign_checkpoint(Checkpoint(signer.name, size, root_from_hashes(hashes[:size])), [signer])


def request(old: int, size: int, hashes: list[bytes] = HASHES, signer: NoteSigner = LOG) -> bytes:
    proof = consistency_proof(old, size, hashes) if 0 < old < size else []
    return format_add_checkpoint(old, proof, note_of(size, hashes, signer))


def state(size: int, hashes: list[bytes] = HASHES) -> WitnessState:
    return WitnessState(size, root_from_hashes(hashes[:size]), note_of(size, hashes))


def witness() -> Witness:
    return Witness(WITNESS, {ORIGIN: [LOG.verifier]})


def refusal(body: bytes, last: WitnessState | None) -> WitnessError:
    with pytest.raises(WitnessError) as exc:
        witness().check(parse_add_checkpoint(body), last)
    return exc.value


def test_cosignature_line_follows_the_spec() -> None:
    """A cosignature is '— name base64(key id || u64 time || Ed25519 sig)' over 'cosignature/v1', time, note."""
    text = note_of(5)[: note_of(5).rfind("\n\n") + 1]
    line = WITNESS.cosign(text, 1679315147)
    name, blob = line[2:-1].split(" ")
    raw = base64.b64decode(blob)
    public = WITNESS.verifier.public_key
    assert name == WITNESS.name and len(raw) == 76
    assert raw[:4] == hashlib.sha256(name.encode() + b"\n\x04" + public.public_bytes_raw()).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    public.verify(raw[12:], b"cosignature/v1\ntime 1679315147\n" + text.encode())
    assert cosigner_key_id(name, public.public_bytes_raw()) == raw[:4]


def test_witness_keys_round_trip_and_refuse_note_keys() -> None:
    """A witness vkey has the 0x04 type; a signed-note (0x01) key is not a witness key."""
    assert CosignatureVerifier.from_key(WITNESS.verifier_key).verifier_key == WITNESS.verifier_key
    with pytest.raises(VerificationError, match="0x04"):
        CosignatureVerifier.from_key(LOG.verifier_key)


def test_cosignatures_verify_count_and_ignore_unknown_lines() -> None:
    """Trusted cosignatures are counted per witness; unknown ones are ignored; a forged one refuses."""
    note = note_of(9)
    text = note[: note.rfind("\n\n") + 1]
    cosigned = note + WITNESS.cosign(text, 100) + OTHER.cosign(text, 101)
    found = verify_cosignatures(cosigned, [WITNESS.verifier, OTHER.verifier])
    assert sorted((c.name, c.timestamp) for c in found) == [(WITNESS.name, 100), (OTHER.name, 101)]
    assert len(require_cosignatures(cosigned, [WITNESS.verifier], 1)) == 1
    with pytest.raises(VerificationError, match="1 of the 2 trusted witnesses"):
        require_cosignatures(note + WITNESS.cosign(text, 100), [WITNESS.verifier, OTHER.verifier], 2)
    with pytest.raises(VerificationError, match="0 of the 1"):
        require_cosignatures(note, [WITNESS.verifier], 1)
    other_note = note_of(10)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_cosignatures(other_note + WITNESS.cosign(text, 100), [WITNESS.verifier])
    with pytest.raises(VerificationError, match="in the future"):
        verify_cosignatures(note + WITNESS.cosign(text, 10_000), [WITNESS.verifier], now=100)


def test_witness_cosigns_a_growing_log() -> None:
    """First sight with old 0, then each extension with its consistency proof, is cosigned."""
    w = witness()
    cp = w.check(parse_add_checkpoint(request(0, 10)), None)
    assert cp.size == 10
    cp = w.check(parse_add_checkpoint(request(10, 33)), state(10))
    assert cp.size == 33
    same = w.check(parse_add_checkpoint(request(33, 33)), state(33))
    assert same.size == 33
    line = w.cosign(note_of(33), 42)
    assert verify_cosignatures(note_of(33) + line, [WITNESS.verifier])[0].timestamp == 42


def test_a_rolled_back_log_is_refused_with_the_size_it_must_extend() -> None:
    """Asking from a smaller old size is 409 with the size last cosigned; going below it is 400."""
    exc = refusal(request(5, 8), state(10))
    assert exc.status == 409 and exc.body == "10\n" and exc.content_type == SIZE_CONTENT_TYPE
    exc = refusal(format_add_checkpoint(10, [], note_of(8)), state(10))
    assert exc.status == 400 and "above the checkpoint size" in exc.message


def test_a_forked_log_is_refused() -> None:
    """Another root for the same size is 409; a tree not extending the cosigned one is 422."""
    exc = refusal(request(10, 10, FORK), state(10))
    assert exc.status == 409 and exc.body == "10\n"
    forked = format_add_checkpoint(10, consistency_proof(10, 20, FORK), note_of(20, FORK))
    assert refusal(forked, state(10)).status == 422
    wrong_proof = format_add_checkpoint(10, consistency_proof(9, 20, HASHES), note_of(20))
    assert refusal(wrong_proof, state(10)).status == 422


def test_unknown_logs_and_untrusted_signatures_are_refused() -> None:
    """An unknown origin is 404; a checkpoint no trusted key signed is 403."""
    stranger = generate_signer("other.example/log", token_bytes=lambda n: b"\x03" * n)
    assert refusal(request(0, 4, signer=stranger), None).status == 404
    impostor = generate_signer(ORIGIN, token_bytes=lambda n: b"\x04" * n)
    assert refusal(request(0, 4, signer=impostor), None).status == 403


@pytest.mark.parametrize("body", [
    b"old 0\n" + note_of(3).encode(),  # no empty line
    b"old 01\n\n" + note_of(3).encode(),
    b"old -1\n\n" + note_of(3).encode(),
    b"new 0\n\n" + note_of(3).encode(),
    b"old 2\nnot base64!\n\n" + note_of(3).encode(),
    b"old 2\n" + base64.b64encode(b"short") + b"\n\n" + note_of(3).encode(),
    b"old 2\n" + (base64.b64encode(bytes(32)) + b"\n") * (MAX_PROOF_LINES + 1) + b"\n" + note_of(3).encode(),
    b"\xff\xfe",
])
def test_malformed_requests_are_400(body: bytes) -> None:
    """A body that is not 'old N', proof lines, an empty line and a checkpoint is 400."""
    with pytest.raises(WitnessError) as exc:
        witness().check(parse_add_checkpoint(body), None)
    assert exc.value.status == 400


def test_a_proof_from_size_zero_is_refused() -> None:
    """The spec says the proof must be empty from old size 0."""
    body = format_add_checkpoint(0, [bytes(32)], note_of(4))
    assert refusal(body, None).status == 400


async def test_state_survives_restarts_and_races_never_roll_it_back(tmp_path: Path) -> None:
    """The cosigned size is kept in SQL: a new service refuses a rollback, and of two racing
    requests from the same old size the stored size ends at the larger one or refuses the other."""
    url = f"sqlite:///{tmp_path / 'witness.db'}"
    engine = make_engine(url)
    clock = FixedClock("2026-03-02T01:00:00+00:00")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.create_schema)
        first = WitnessService(engine, witness(), clock)
        lines = await first.add_checkpoint(request(0, 10))
        assert verify_cosignatures(note_of(10) + lines, [WITNESS.verifier])[0].timestamp == int(clock.time())
        again = WitnessService(engine, witness(), clock)
        with pytest.raises(WitnessError) as exc:
            await again.add_checkpoint(request(0, 5))
        assert exc.value.status == 409 and exc.value.body == "10\n"
        results = await asyncio.gather(again.add_checkpoint(request(10, 40)), again.add_checkpoint(request(10, 20)),
                                       return_exceptions=True)
        ok = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, WitnessError)]
        assert len(ok) == 1 and len(refused) == 1 and refused[0].status == 409
        (stored,) = await again.states()
        assert stored.size in (20, 40)
        with pytest.raises(WitnessError):
            await again.add_checkpoint(request(10, 30))
    finally:
        await engine.dispose()
