"""The audit entry chain: canonical leaves linked by `prev_hash`, checked against a checkpoint.

Rules (CONTRACTS.md §4):
- a leaf is the RFC 8785 (JCS) canonical JSON of one entry object;
- entry i carries `prev_hash`, the lowercase hex RFC 9162 leaf hash of entry i-1,
  and entry 0 carries 64 zeros;
- the signed checkpoint's root is the RFC 9162 root of the first `size` leaves.

`verify_chain` reports the FIRST index that breaks a rule. An edit that leaves valid JSON
behind surfaces at the next entry, whose `prev_hash` no longer matches; an edit to the
last entry, or a rewritten suffix, surfaces only against the checkpoint (`verify_log`).

Speed matters (an auditor re-reads the whole log), so `decode_entry` accepts the common
case in C: the leaf is parsed with orjson and written back with sorted keys, and if that
gives the same bytes, and the value holds no float and the leaf no character outside the
BMP, it is the RFC 8785 form. For such values JCS and orjson write
the same bytes: keys sorted by code point (UTF-16 order only differs outside the BMP),
the same string escapes (the two-character forms for backspace, tab, newline, form feed and
carriage return, lowercase six-character forms for the other controls, nothing else escaped),
integers in plain decimal (orjson's strict-integer mode refuses those past 2**53, as
JCS does). Duplicated keys, whitespace, "-0" and needless escapes do not survive the
round trip. Any other leaf goes to the exact check (`rfc8785` re-encoding), which alone
may reject; a property test holds the two paths equal.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from audit.checkpoint import verify_checkpoint
from audit.note import NoteVerifier
from audit.rfc9162 import root_from_hashes
from credcore.canonical import canonical_json
from credcore.errors import VerificationError

GENESIS_PREV = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_sha256 = hashlib.sha256


def _decode_exact(leaf: bytes) -> dict[str, Any]:
    """The reference check: parse, then RFC 8785 re-encoding must give the same bytes."""
    try:
        value = json.loads(leaf.decode("utf-8"))
    except UnicodeDecodeError:
        raise _not_canonical("not UTF-8") from None
    except (ValueError, RecursionError):
        raise _not_canonical("not valid JSON") from None
    if not isinstance(value, dict):
        raise _not_canonical("not an object")
    try:
        canonical = canonical_json(value)
    except ValueError:  # NaN, integers beyond 2**53, lone surrogates
        raise _not_canonical("holds a value that JCS cannot represent") from None
    if canonical != leaf:
        raise _not_canonical("RFC 8785 re-encoding differs")
    return value


def _not_canonical(why: str) -> VerificationError:
    return VerificationError(f"not canonical JSON ({why})")


_ORJSON_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


_BELOW_4_BYTE_UTF8 = bytes(range(0xF0))


def _outside_bmp(leaf: bytes) -> bool:
    """Whether UTF-8 `leaf` holds a 4-byte character (lead byte 0xF0 or more), found in C:
    deleting every other byte value leaves nothing otherwise."""
    return not leaf.isascii() and bool(leaf.translate(None, _BELOW_4_BYTE_UTF8))


def is_plain(value: dict[str, Any]) -> bool:
    """Whether an object holds only strings, integers, booleans, nulls, objects and arrays of
    exactly those types, anywhere: then orjson writes what JCS writes (given the checks on the
    bytes), and nothing needs reading back. A float, a tuple, a subclass or any other type is
    left to the exact path. (Every entry is walked on append and on verify: one flat loop, with
    the names it tests held in locals, costs half what a set of types per container did.)"""
    str_, int_, bool_, dict_, list_, type_ = str, int, bool, dict, list, type
    todo: list[Any] = [value]
    for container in todo:  # grows as it is walked: no pops, no recursion
        for item in container.values() if type_(container) is dict_ else container:
            kind = type_(item)
            if kind is str_ or kind is int_ or item is None or kind is bool_:
                continue
            if kind is dict_ or kind is list_:
                todo.append(item)
            else:
                return False
    return True


def decode_entry(leaf: bytes) -> dict[str, Any]:
    """The entry object of `leaf`; VerificationError unless `leaf` is its RFC 8785 form."""
    if _outside_bmp(leaf):  # UTF-16 key order may differ
        return _decode_exact(leaf)
    try:
        value = orjson.loads(leaf)
        same = type(value) is dict and orjson.dumps(value, option=_ORJSON_CANONICAL) == leaf
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, ValueError, RecursionError):
        return _decode_exact(leaf)
    if not same or not is_plain(value):
        return _decode_exact(leaf)
    return value


# Values orjson would write but JCS has no form for go to the reference encoder, which refuses them.
_ORJSON_ENCODE = (_ORJSON_CANONICAL | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                  | orjson.OPT_PASSTHROUGH_SUBCLASS)


def encode_entry(entry: dict[str, Any]) -> bytes:
    """The leaf bytes of an entry: its RFC 8785 canonical JSON.

    orjson writes it when the entry is plain (`is_plain`: no float, tuple, enum, subclass or other
    type that orjson would write its own way), the result holds no character outside the BMP and
    no integer past 2**53 (orjson's strict mode refuses those): the same argument as
    `decode_entry`'s. Anything else is left to the reference, which alone decides."""
    try:
        leaf = orjson.dumps(entry, option=_ORJSON_ENCODE)
    except (TypeError, orjson.JSONEncodeError):
        return canonical_json(entry)
    if _outside_bmp(leaf) or not is_plain(entry):
        return canonical_json(entry)
    return leaf


def chain_entry(entry_without_prev: dict[str, Any], prev_hash_hex: str) -> bytes:
    """The leaf for an entry appended after a leaf whose hex leaf hash is `prev_hash_hex`."""
    if "prev_hash" in entry_without_prev:
        raise ValueError("the entry already has a prev_hash; the chain sets it")
    if not _HEX64.fullmatch(prev_hash_hex):
        raise ValueError("prev_hash must be 64 lowercase hex digits")
    return encode_entry({**entry_without_prev, "prev_hash": prev_hash_hex})


@dataclass(frozen=True)
class ChainResult:
    """What `verify_chain` checked: `size` is the log size after the last leaf checked
    (start index + count), `leaf_hashes` the RFC 9162 hashes of the leaves checked, and
    `last_hash` the hex `prev_hash` the next entry must carry."""

    size: int
    leaf_hashes: list[bytes]
    last_hash: str


def verify_chain(leaves: Iterable[bytes], start_index: int = 0, prev_hash: str = GENESIS_PREV) -> ChainResult:
    """Check every leaf is a canonical entry linked to the one before; raise at the first
    that is not. Pass `start_index`/`prev_hash` from a previous result to go on in pages."""
    hashes: list[bytes] = []
    append = hashes.append
    expected = prev_hash
    for index, leaf in enumerate(leaves, start_index):
        try:
            entry = decode_entry(leaf)
        except VerificationError as exc:
            raise VerificationError(
                f"entry {index}: {exc.description}: the entry was corrupted or edited",
                index=index,
            ) from None
        got = entry.get("prev_hash")
        if got != expected:
            raise _link_error(index, got, expected)
        digest = _sha256(b"\x00" + leaf).digest()
        append(digest)
        expected = digest.hex()
    return ChainResult(start_index + len(hashes), hashes, expected)


def _link_error(index: int, got: object, expected: str) -> VerificationError:
    if got is None:
        return VerificationError(f"entry {index}: missing prev_hash", index=index)
    before = "the genesis value (64 zeros)" if index == 0 else f"the leaf hash of entry {index - 1}"
    return VerificationError(
        f"entry {index}: prev_hash mismatch: {str(got)[:64]!r} is not {before} ({expected}); "
        f"an entry was edited, deleted, reordered or inserted at or just before {index}",
        index=index,
    )


def verify_log(leaves: Iterable[bytes], checkpoint_note: str, verifiers: Sequence[NoteVerifier]) -> int:
    """Verify a whole log against its signed checkpoint; return the number of entries.

    Checks, in order: the chain (first bad index), the checkpoint signature and format,
    that the log still holds every checkpointed entry, and the Merkle root of those.
    """
    chain = verify_chain(leaves)
    cp = verify_checkpoint(checkpoint_note, verifiers)
    if cp.size > chain.size:
        raise VerificationError(
            f"log truncated/rolled back: checkpoint covers {cp.size} entries but log has {chain.size}",
            index=chain.size,
        )
    if root_from_hashes(chain.leaf_hashes[: cp.size]) != cp.root:
        if cp.size == 0:
            raise VerificationError("the signed checkpoint of the empty log has a root other than SHA-256('')")
        # The chain is intact, so whatever changed ends at entry size-1: had a change
        # ended earlier, the next entry's prev_hash would have caught it above.
        last = cp.size - 1
        raise VerificationError(
            f"entry {last}: the Merkle root of entries 0..{last} does not match the signed "
            f"checkpoint; entry {last} (and perhaps earlier ones, re-linked) was rewritten",
            index=last,
        )
    return chain.size
