"""Cursor paging for the list and the disclosure feed: `{"records": [...], "next": cursor|null}`.

A cursor names the feed position (`seq`) of the last record returned, and the next page starts
after it. Because positions never change, a walk is stable: it sees every record exactly once,
even when the set of currently listed entries changes between two pages. Cursors are opaque to
clients (base64url of `seq:N`) and strictly parsed: anything else is a 400, never a silent
restart from the beginning.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_right

from credcore.errors import InvalidParameter

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_TEXT = re.compile(r"seq:(0|[1-9][0-9]{0,11})")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,7}")


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def parse_cursor(raw: str | None) -> int:
    """The position after which a page starts: 0 (the beginning) when there is no cursor."""
    if not raw:
        return 0
    problem = InvalidParameter("cursor", "the cursor is not one this store issued.")
    if not _BASE64URL.fullmatch(raw):
        raise problem
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise problem from exc
    match = _CURSOR_TEXT.fullmatch(text)
    if match is None or encode_cursor(int(match.group(1))) != raw:
        raise problem
    return int(match.group(1))


def parse_limit(raw: str | None) -> int:
    """The page size: DEFAULT_LIMIT when absent, else an integer from 1 to MAX_LIMIT."""
    if not raw:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


class Page:
    """Serialized records with their feed positions (ascending), rendered a page at a time."""

    def __init__(self, seqs: list[int], bodies: list[bytes]) -> None:
        if len(seqs) != len(bodies):
            raise ValueError("every record needs its position")
        self._seqs = seqs
        self._bodies = bodies

    def __len__(self) -> int:
        return len(self._seqs)

    def render(self, after: int, limit: int) -> bytes:
        start = bisect_right(self._seqs, after)
        end = min(start + limit, len(self._seqs))
        # `next` is null exactly when nothing follows, so a client never fetches an empty page.
        following = b"null"
        if end < len(self._seqs):
            following = b'"' + encode_cursor(self._seqs[end - 1]).encode() + b'"'
        records = b",".join(self._bodies[start:end])
        return b'{"records":[' + records + b'],"next":' + following + b"}"
