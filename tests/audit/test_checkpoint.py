"""C2SP tlog-checkpoints: the spec's example, round trips, and each malformed line named."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.checkpoint import (
    Checkpoint,
    format_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from audit.note import generate_signer
from credcore.errors import VerificationError

SPEC_EXAMPLE = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
ROOT_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


def test_spec_example_parses_and_formats_back() -> None:
    """The checkpoint shown in the C2SP spec parses and formats to the same text."""
    cp = parse_checkpoint(SPEC_EXAMPLE)
    assert cp == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert format_checkpoint(cp) == SPEC_EXAMPLE


@given(
    st.text(st.characters(min_codepoint=0x20, exclude_characters="\n"), min_size=1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
)
def test_any_checkpoint_round_trips(origin: str, size: int, root: bytes) -> None:
    """Every valid origin, uint64 size and 32-byte root survives formatting and parsing."""
    cp = Checkpoint(origin, size, root)
    assert parse_checkpoint(format_checkpoint(cp)) == cp


def test_extension_lines_are_ignored() -> None:
    """Non-empty extension lines after the root are accepted and do not change the result."""
    assert parse_checkpoint(SPEC_EXAMPLE + "ext one\next two\n") == parse_checkpoint(SPEC_EXAMPLE)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"\n5\n{ROOT_B64}\n", "line 1"),
        (f"log\n05\n{ROOT_B64}\n", "line 2"),
        (f"log\n-1\n{ROOT_B64}\n", "line 2"),
        (f"log\n+1\n{ROOT_B64}\n", "line 2"),
        (f"log\n1.0\n{ROOT_B64}\n", "line 2"),
        (f"log\n 1\n{ROOT_B64}\n", "line 2"),
        (f"log\n\u0661\n{ROOT_B64}\n", "line 2"),
        (f"log\n{2**64}\n{ROOT_B64}\n", "line 2"),
        (f"log\n\n{ROOT_B64}\n", "line 2"),
        ("log\n1\nnot base64!\n", "line 3"),
        (f"log\n1\n{ROOT_B64[:-4]}\n", "line 3"),
        (f"log\n1\n{base64.b64encode(bytes(33)).decode()}\n", "line 3"),
        (f"log\n1\n{ROOT_B64.rstrip('=')}\n", "line 3"),
        (f"log\n1\n{ROOT_B64}\n\n", "line 4"),
        (f"log\n1\n{ROOT_B64}", "newline"),
        ("log\n1\n", "lines"),
    ],
    ids=[
        "empty origin",
        "leading zero",
        "negative",
        "plus sign",
        "decimal point",
        "space",
        "arabic digit",
        "over uint64",
        "empty size",
        "not base64",
        "short root",
        "long root",
        "unpadded root",
        "empty extension",
        "no final newline",
        "two lines",
    ],
)
def test_malformed_checkpoints_name_the_bad_line(text: str, line: str) -> None:
    """Each malformed checkpoint is refused with a message naming the line at fault."""
    with pytest.raises(VerificationError, match=line):
        parse_checkpoint(text)


@pytest.mark.parametrize("args", [("", 1, ROOT), ("log", -1, ROOT), ("log", 2**64, ROOT), ("log", 1, ROOT[:31])])
def test_invalid_checkpoint_values_cannot_be_built(args: tuple) -> None:
    """A Checkpoint with an empty origin, a size outside uint64 or a short root is a ValueError."""
    with pytest.raises(ValueError):
        Checkpoint(*args)


def test_signed_checkpoint_verifies_and_binds_origin_to_key() -> None:
    """A checkpoint signed by its origin's key verifies; one signed by another name does not."""
    cp = Checkpoint("log.example/audit", 3, ROOT)
    signer = generate_signer("log.example/audit")
    assert verify_checkpoint(sign_checkpoint(cp, [signer]), [signer.verifier]) == cp
    impostor = generate_signer("other.example/log")
    with pytest.raises(ValueError):
        sign_checkpoint(cp, [impostor])
    # A valid note by a trusted key whose name is not the origin must not pass as a checkpoint.
    note = impostor.sign(format_checkpoint(cp))
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(note, [impostor.verifier])
