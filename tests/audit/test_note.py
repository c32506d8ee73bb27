"""C2SP signed notes: the published Go vector, rotation, and every way a note can be refused."""

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from audit.note import (
    NoteSigner,
    NoteVerifier,
    generate_signer,
    key_id,
    parse_signer_key,
    sign_note,
    verify_note,
)
from credcore.errors import ConfigError, VerificationError

VECTOR = json.loads(
    (Path(__file__).resolve().parents[3] / "shared" / "data" / "rfc9162-and-signed-note-vectors.json").read_text()
)["signed_note"]
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
DASH = "\u2014"


@pytest.fixture
def make_signer() -> Callable[[str, int], NoteSigner]:
    """A factory of deterministic signers: the same name and seed give the same key."""

    def make(name: str, seed: int = 1) -> NoteSigner:
        return generate_signer(name, token_bytes=lambda n: bytes([seed]) * n)

    return make


def test_vector_note_verifies() -> None:
    """The published note opens with its verifier key and yields its text and key name."""
    verified = verify_note(VECTOR["note"], [NoteVerifier.from_key(VECTOR["verifier_key"])])
    assert verified.text == TEXT
    assert verified.names == ("PeterNeumann",)


def test_vector_signer_reproduces_the_note() -> None:
    """Signing the text with the published test signer key gives the published note exactly."""
    signer = parse_signer_key(VECTOR["signer_key_test_only"])
    assert signer.verifier_key == VECTOR["verifier_key"]
    assert signer.signer_key == VECTOR["signer_key_test_only"]
    assert signer.sign(TEXT) == VECTOR["note"]
    assert key_id("PeterNeumann", signer.verifier.public_key.public_bytes_raw()).hex() == "c74f20a3"


def test_verifier_key_round_trips() -> None:
    """Parsing a verifier key and printing it back gives the same string."""
    assert NoteVerifier.from_key(VECTOR["verifier_key"]).verifier_key == VECTOR["verifier_key"]


def flip_signature(note: str) -> str:
    head, sig = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    return f"{head} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize(
    "note",
    [
        VECTOR["note"].replace("answer", "ANSWER"),
        VECTOR["note"].replace("problem is.", "problem is!"),
        "extra line\n" + VECTOR["note"],
        flip_signature(VECTOR["note"]),
    ],
    ids=["word", "punctuation", "prepended line", "signature bit"],
)
def test_tampered_note_is_refused(note: str) -> None:
    """A note whose text or signature changed fails with the known key."""
    with pytest.raises(VerificationError, match="does not verify"):
        verify_note(note, [NoteVerifier.from_key(VECTOR["verifier_key"])])


def test_only_unknown_keys_is_refused(make_signer: Callable[..., NoteSigner]) -> None:
    """A note signed only by keys the verifier does not trust is refused."""
    other = make_signer("PeterNeumann", 7)  # same name, other key: still unknown
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_note(other.sign(TEXT), [NoteVerifier.from_key(VECTOR["verifier_key"])])
    with pytest.raises(VerificationError, match="none configured"):
        verify_note(VECTOR["note"], [])


def test_unknown_signatures_are_ignored(make_signer: Callable[..., NoteSigner]) -> None:
    """Signature lines of unknown keys, even garbage ones, do not stop a trusted one verifying."""
    stranger = make_signer("witness.example/w1", 9)
    junk = f"{DASH} PeterNeumann {base64.b64encode(b'zzzz' + bytes(64)).decode()}\n"
    note = VECTOR["note"] + stranger.signature_line(TEXT) + junk
    verified = verify_note(note, [NoteVerifier.from_key(VECTOR["verifier_key"])])
    assert verified.names == ("PeterNeumann",)


def test_rotation_note_verifies_with_either_key(make_signer: Callable[..., NoteSigner]) -> None:
    """A note signed by the old and the new key opens with either key alone or with both."""
    old, new = make_signer("log.example/audit", 1), make_signer("log.example/audit", 2)
    note = sign_note(TEXT, [old, new])
    assert note.count(DASH) == 2
    for verifiers in ([old.verifier], [new.verifier], [new.verifier, old.verifier]):
        assert verify_note(note, verifiers).text == TEXT
    assert verify_note(note, [old.verifier, new.verifier]).names == (old.name, new.name)


def test_a_bad_signature_by_a_known_key_rejects_the_note(
    make_signer: Callable[..., NoteSigner],
) -> None:
    """If any trusted key's signature fails, the note is refused even when another verifies."""
    old, new = make_signer("log.example/audit", 1), make_signer("log.example/audit", 2)
    forged = old.sign(TEXT) + flip_signature(new.sign(TEXT)).split("\n\n")[1]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_note(forged, [old.verifier, new.verifier])


GOOD_SIG = VECTOR["note"].split("\n\n")[1]


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + GOOD_SIG.rstrip("\n"),
        TEXT + "\n" + GOOD_SIG.replace(DASH, "-"),
        TEXT + "\n" + GOOD_SIG.replace("PeterNeumann ", "PeterNeumann"),
        TEXT + "\n" + GOOD_SIG.replace("PeterNeumann", "Peter+Neumann"),
        TEXT + "\n" + GOOD_SIG.replace("=\n", "\n"),
        TEXT + "\n" + GOOD_SIG.replace("x08go", "x08g!"),
        TEXT + "\n" + f"{DASH} PeterNeumann AAAA\n",
        TEXT.replace("you", "y\x01u") + "\n" + GOOD_SIG,
        TEXT + "\n" + GOOD_SIG + "\n",
        TEXT + "\n" + GOOD_SIG * 101,
    ],
    ids=[
        "no signatures",
        "empty signature block",
        "no final newline",
        "hyphen instead of em dash",
        "no space after name",
        "plus in name",
        "bad base64 padding",
        "non-base64 character",
        "signature too short",
        "control character",
        "trailing blank line",
        "too many signatures",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    """A note that breaks the signed-note format is refused before any signature is trusted."""
    with pytest.raises(VerificationError):
        verify_note(note, [NoteVerifier.from_key(VECTOR["verifier_key"])])


def test_text_may_hold_blank_lines(make_signer: Callable[..., NoteSigner]) -> None:
    """The last blank line separates the signatures, so the text may contain blank lines."""
    signer = make_signer("log.example/audit")
    text = "first\n\nthird\n"
    assert verify_note(signer.sign(text), [signer.verifier]).text == text


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
    ids=["missing key", "wrong key id", "wrong algorithm", "short key", "space", "no name"],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    """A verifier key that is incomplete, inconsistent or not Ed25519 is refused."""
    with pytest.raises(VerificationError):
        NoteVerifier.from_key(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        VECTOR["signer_key_test_only"].replace("c74f20a3", "c74f20a4"),
        VECTOR["signer_key_test_only"].replace("PRIVATE+KEY+", "PRIVATE+"),
        VECTOR["signer_key_test_only"][:-4],
        VECTOR["verifier_key"],
    ],
    ids=["wrong key id", "no KEY", "truncated", "verifier key"],
)
def test_malformed_signer_keys_are_refused(skey: str) -> None:
    """A signer key that does not match the PRIVATE+KEY form or its key id is a ConfigError."""
    with pytest.raises(ConfigError):
        parse_signer_key(skey)


def test_generated_signer_round_trips(make_signer: Callable[..., NoteSigner]) -> None:
    """A generated signer's secret key string reads back as the same key."""
    signer = make_signer("log.example/audit", 3)
    again = parse_signer_key(signer.signer_key)
    assert again.verifier_key == signer.verifier_key
    assert verify_note(again.sign(TEXT), [signer.verifier]).names == ("log.example/audit",)
    assert generate_signer("a").verifier_key != generate_signer("a").verifier_key


@pytest.mark.parametrize("text", ["no newline", "control\x07\n", "surrogate \ud800\n"])
def test_signing_refuses_text_that_is_not_a_note(text: str, make_signer: Callable[..., NoteSigner]) -> None:
    """Text without a final newline, or with a control character, cannot be signed."""
    with pytest.raises(ValueError):
        make_signer("log.example/audit").sign(text)


@pytest.mark.parametrize("name", ["", "with space", "a+b", "tab\tname"])
def test_signer_names_follow_the_spec(name: str, make_signer: Callable[..., NoteSigner]) -> None:
    """A key name that is empty or has a space or '+' is refused."""
    with pytest.raises(ValueError):
        make_signer(name)
