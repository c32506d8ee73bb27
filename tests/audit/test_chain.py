"""The entry chain: canonical leaves, prev_hash links, and the log against its checkpoint."""

import enum
import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from audit.chain import (
    GENESIS_PREV,
    chain_entry,
    decode_entry,
    encode_entry,
    verify_chain,
    verify_log,
)
from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.note import NoteSigner, generate_signer
from audit.rfc9162 import leaf_hash, root_from_hashes
from credcore.canonical import canonical_json
from credcore.errors import VerificationError

ORIGIN = "log.example/audit"
SIGNER = generate_signer(ORIGIN, token_bytes=lambda n: b"\x05" * n)

# Strings that reach both paths of decode_entry: plain ASCII and CJK stay on the fast
# path; quotes, backslashes, control characters, emoji and ", " take the exact one.
TEXT = st.text(st.sampled_from(list('abcxyz 09-_/.,:{}[]企业"\\\x01\u2028😀\ue000')), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=8)
REALISTIC = st.fixed_dictionaries(
    {
        "time": st.just("2025-03-01T08:00:00.123456+08:00"),
        "client_id": st.none() | st.sampled_from(["op-1a2b3c4d", "op-0000ffff"]),
        "request": st.fixed_dictionaries(
            {"method": st.sampled_from(["GET", "POST"]), "path": st.text("/abcv19", max_size=30)}
        ),
        "uscc": st.lists(st.sampled_from(["91350100M000100Y43", "911100001000000000"]), max_size=2),
        "decision": st.sampled_from(["allow", "deny"]),
        "reason": st.sampled_from(["licensed", "insufficient_scope", "quota exceeded: daily"]),
        "status": st.sampled_from([200, 403, 429]),
        "fields": st.lists(st.sampled_from(["authority", "fine_amount", "uscc"]), max_size=3),
        "body_sha256": st.text("0123456789abcdef", min_size=64, max_size=64),
    }
)
ENTRIES = REALISTIC | st.dictionaries(TEXT.filter(lambda k: k != "prev_hash"), VALUES, max_size=5)
CHAINS = st.lists(ENTRIES, min_size=2, max_size=12)


def build(entries: list[dict[str, Any]], prev: str = GENESIS_PREV) -> list[bytes]:
    leaves = []
    for entry in entries:
        leaves.append(chain_entry(entry, prev))
        prev = leaf_hash(leaves[-1]).hex()
    return leaves


def checkpoint_note(leaves: list[bytes], size: int, signer: NoteSigner = SIGNER) -> str:
    root = root_from_hashes([leaf_hash(leaf) for leaf in leaves[:size]])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), [signer])


def reference_first_bad(leaves: list[bytes]) -> int | None:
    """The rules of CONTRACTS.md §4 written plainly, with no fast path (RecursionError
    cannot occur: the generated entries are shallow)."""
    prev = GENESIS_PREV
    for i, leaf in enumerate(leaves):
        try:
            entry = json.loads(leaf.decode())
            ok = isinstance(entry, dict) and canonical_json(entry) == leaf
        except ValueError:
            ok = False
        if not ok or entry.get("prev_hash") != prev:
            return i
        prev = hashlib.sha256(b"\x00" + leaf).hexdigest()
    return None


def first_bad_index(leaves: list[bytes]) -> int | None:
    try:
        verify_chain(leaves)
    except VerificationError as exc:
        assert exc.description.startswith(f"entry {exc.index}: ")
        return exc.index
    return None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(ENTRIES, max_size=5), max_size=4))
def test_chain_verifies_after_any_appends(batches: list[list[dict[str, Any]]]) -> None:
    """A chain verifies after every batch of appends, whole or continued page by page."""
    leaves: list[bytes] = []
    prev, start = GENESIS_PREV, 0
    for batch in batches:
        new = build(batch, prev)
        page = verify_chain(new, start_index=start, prev_hash=prev)
        leaves += new
        whole = verify_chain(leaves)
        assert whole.size == page.size == len(leaves)
        assert whole.last_hash == page.last_hash
        assert whole.leaf_hashes == [leaf_hash(leaf) for leaf in leaves]
        prev, start = page.last_hash, page.size
        assert verify_log(leaves, checkpoint_note(leaves, len(leaves)), [SIGNER.verifier]) == len(leaves)


@given(ENTRIES)
def test_decode_entry_reads_back_every_canonical_entry(entry: dict[str, Any]) -> None:
    """Any entry's canonical leaf is accepted and decodes to an object with that same form."""
    leaf = encode_entry(entry)
    assert encode_entry(decode_entry(leaf)) == leaf


@settings(max_examples=300)
@given(ENTRIES, st.data())
def test_decode_entry_agrees_with_rfc8785_on_damaged_leaves(entry: dict, data: st.DataObject) -> None:
    """After random edits, the fast check accepts a leaf exactly when re-encoding gives it back."""
    leaf = bytearray(encode_entry(entry))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(leaf)))
        edit = data.draw(st.sampled_from([b" ", b"\\", b'"', b",", b"0", b".5", b"e1", b"-", b"\n"]))
        if data.draw(st.booleans()) and pos < len(leaf):
            leaf[pos : pos + 1] = edit
        else:
            leaf[pos:pos] = edit
    leaf_bytes = bytes(leaf)
    try:
        value = json.loads(leaf_bytes)
        expected = isinstance(value, dict) and canonical_json(value) == leaf_bytes
    except ValueError:
        expected = False
    try:
        decode_entry(leaf_bytes)
        accepted = True
    except VerificationError:
        accepted = False
    assert accepted == expected


@settings(max_examples=150, deadline=None)
@given(CHAINS, st.data())
def test_flipped_byte_is_found_at_the_first_bad_entry(entries: list, data: st.DataObject) -> None:
    """A flipped byte in entry k fails at k, or at k+1 whose link it breaks, or at the checkpoint."""
    leaves = build(entries)
    k = data.draw(st.integers(0, len(leaves) - 1))
    pos = data.draw(st.integers(0, len(leaves[k]) - 1))
    bit = data.draw(st.integers(1, 255))
    tampered = list(leaves)
    tampered[k] = leaves[k][:pos] + bytes([leaves[k][pos] ^ bit]) + leaves[k][pos + 1 :]
    expected = reference_first_bad(tampered)
    assert first_bad_index(tampered) == expected
    if expected is None:  # still a valid chain: only the last entry can be edited unseen
        assert k == len(leaves) - 1
        with pytest.raises(VerificationError) as exc:
            verify_log(tampered, checkpoint_note(leaves, len(leaves)), [SIGNER.verifier])
        assert exc.value.index == k
    else:
        assert expected in (k, k + 1)


@settings(max_examples=60, deadline=None)
@given(CHAINS, st.data())
def test_dropped_swapped_and_inserted_entries_fail_where_they_happen(entries: list, data: st.DataObject) -> None:
    """Dropping, swapping or inserting an entry fails at its position (a re-linked forgery: next)."""
    leaves = build(entries)
    k = data.draw(st.integers(0, len(leaves) - 2))
    assert first_bad_index(leaves[:k] + leaves[k + 1 :]) == k
    assert first_bad_index(leaves[:k] + [leaves[k + 1], leaves[k]] + leaves[k + 2 :]) == k
    forged_entry = data.draw(ENTRIES)
    stray = chain_entry(forged_entry, "f" * 64)
    assert first_bad_index(leaves[:k] + [stray] + leaves[k:]) == k
    prev = leaf_hash(leaves[k - 1]).hex() if k else GENESIS_PREV
    linked = chain_entry(forged_entry, prev)
    assume(linked != leaves[k])
    assert first_bad_index(leaves[:k] + [linked] + leaves[k:]) == k + 1


@settings(max_examples=40, deadline=None)
@given(CHAINS, st.data())
def test_truncated_or_rolled_back_log_fails_against_checkpoint(entries: list, data: st.DataObject) -> None:
    """A log shorter than its checkpoint, or rewritten below it, fails with the right index."""
    leaves = build(entries)
    n = len(leaves)
    note = checkpoint_note(leaves, n)
    m = data.draw(st.integers(0, n - 1))
    with pytest.raises(VerificationError, match=f"covers {n} entries but log has {m}") as exc:
        verify_log(leaves[:m], note, [SIGNER.verifier])
    assert exc.value.index == m
    # Rolled back to m, then regrown with other entries: a valid chain, but not the signed one.
    regrown = leaves[:m] + build(
        [{"forged": i} for i in range(n - m)], leaf_hash(leaves[m - 1]).hex() if m else GENESIS_PREV
    )
    with pytest.raises(VerificationError, match="Merkle root") as exc:
        verify_log(regrown, note, [SIGNER.verifier])
    assert exc.value.index == n - 1


def test_log_may_grow_past_its_checkpoint() -> None:
    """Entries appended after the latest checkpoint do not fail verification."""
    leaves = build([{"n": i} for i in range(10)])
    assert verify_log(leaves, checkpoint_note(leaves, 7), [SIGNER.verifier]) == 10
    assert verify_log([], checkpoint_note([], 0), [SIGNER.verifier]) == 0


def test_checkpoint_signature_is_required() -> None:
    """A checkpoint signed by an untrusted key, or altered after signing, fails."""
    leaves = build([{"n": i} for i in range(3)])
    stranger = generate_signer(ORIGIN)
    with pytest.raises(VerificationError, match="trusted key"):
        verify_log(leaves, checkpoint_note(leaves, 3, stranger), [SIGNER.verifier])
    altered = checkpoint_note(leaves, 3).replace("\n3\n", "\n2\n", 1)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_log(leaves, altered, [SIGNER.verifier])


CANONICAL = {
    "plain": b'{"a":1,"b":[true,false,null],"c":{"d":"x"}}',
    "floats": b'{"a":0.5,"b":1e+21,"c":1e-7,"d":-1.5}',
    "escapes": b'{"a":"q\\"b\\\\c\\n\\u001f"}',
    "utf16 key order": '{"😀":1,"\ue000":2}'.encode(),
    "spaces in strings": b'{"a":"x, y: [z] { }"}',
    "cjk": '{"name":"企业名称"}'.encode(),
    "16-digit integer": b'{"a":9007199254740991}',
    "empty": b"{}",
}


@pytest.mark.parametrize("leaf", CANONICAL.values(), ids=CANONICAL.keys())
def test_canonical_leaves_are_accepted(leaf: bytes) -> None:
    """Leaves in RFC 8785 form are accepted, whichever path checks them."""
    assert encode_entry(decode_entry(leaf)) == leaf


NOT_CANONICAL = {
    "space after colon": b'{"a": 1}',
    "newline": b'{"a":1}\n',
    "unsorted keys": b'{"b":1,"a":2}',
    "unsorted nested keys": b'{"a":{"z":1,"y":2}}',
    "duplicate key": b'{"a":1,"a":1}',
    "escaped slash": b'{"a":"\\/"}',
    "needless escape": b'{"a":"\\u0041"}',
    "uppercase escape": b'{"a":"\\u001F"}',
    "float with .0": b'{"a":1.0}',
    "exponent form": b'{"a":1e2}',
    "negative zero": b'{"a":-0}',
    "huge integer": b'{"a":9007199254740993}',
    "NaN": b'{"a":NaN}',
    "code point key order": '{"\ue000":2,"😀":1}'.encode(),
    "array": b"[1,2]",
    "string": b'"a"',
    "not UTF-8": b'{"a":"\xff"}',
    "trailing data": b'{"a":1}{}',
    "byte order mark": b'\xef\xbb\xbf{"a":1}',
    "deep nesting": b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}",
    "empty": b"",
}


@pytest.mark.parametrize("leaf", NOT_CANONICAL.values(), ids=NOT_CANONICAL.keys())
def test_non_canonical_leaves_are_refused(leaf: bytes) -> None:
    """A leaf that is not the RFC 8785 form of an object fails at its index as not canonical."""
    leaves = build([{"n": 0}])
    with pytest.raises(VerificationError, match="entry 1: not canonical JSON") as exc:
        verify_chain([*leaves, leaf])
    assert exc.value.index == 1


def test_missing_and_wrong_prev_hash_are_named() -> None:
    """An entry without prev_hash, or with another's, fails naming the kind of damage."""
    with pytest.raises(VerificationError, match="entry 0: missing prev_hash") as exc:
        verify_chain([encode_entry({"n": 0})])
    assert exc.value.index == 0
    with pytest.raises(VerificationError, match="entry 0: prev_hash mismatch.*genesis"):
        verify_chain([chain_entry({"n": 0}, "1" * 64)])
    leaves = build([{"n": 0}, {"n": 1}, {"n": 2}])
    with pytest.raises(VerificationError, match="entry 1: prev_hash mismatch.*deleted, reordered"):
        verify_chain([leaves[0], leaves[2]])


def test_chain_entry_refuses_bad_links() -> None:
    """chain_entry sets prev_hash itself and needs a 64-digit lowercase hex hash."""
    with pytest.raises(ValueError):
        chain_entry({"prev_hash": GENESIS_PREV}, GENESIS_PREV)
    with pytest.raises(ValueError):
        chain_entry({}, "A" * 64)


def test_empty_checkpoint_with_a_root_is_refused() -> None:
    """A signed checkpoint of size 0 must carry the empty-tree root."""
    note = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), [SIGNER])
    with pytest.raises(VerificationError, match="empty log") as exc:
        verify_log(build([{"n": 0}]), note, [SIGNER.verifier])
    assert exc.value.index is None


@settings(max_examples=300)
@given(st.dictionaries(TEXT, VALUES, max_size=6) | REALISTIC)
def test_encode_entry_is_the_reference_encoding(entry: dict[str, Any]) -> None:
    """The writer's fast encoder gives the bytes of RFC 8785 (the rfc8785 reference), or refuses alike."""
    try:
        expected: bytes | None = canonical_json(entry)
    except ValueError:
        expected = None
    try:
        got: bytes | None = encode_entry(entry)
    except ValueError:
        got = None
    assert got == expected


class _Text(str):
    pass


class _Level(enum.IntEnum):
    HIGH = 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.0, -0.0, 1e21, 2**60, (1, 2.5), "\ud800",
                                   uuid.UUID(int=5), _Text("x"), _Level.HIGH, [True, None, {"a": [1, 2.5]}]])
def test_encode_entry_hands_the_hard_values_to_the_reference(value: Any) -> None:
    """NaN, infinities, floats (nested too), big integers, tuples, lone surrogates, UUIDs, subclasses
    and enums get the reference's answer."""
    try:
        expected: bytes | None = canonical_json({"v": value})
    except ValueError:
        expected = None
    try:
        got: bytes | None = encode_entry({"v": value})
    except ValueError:
        got = None
    assert got == expected
