"""Cursors and pages: opaque, strictly parsed, and stable under a changing set of records."""

from __future__ import annotations

import json

import pytest

from credcore.errors import InvalidParameter
from credstore.paging import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    encode_cursor,
    parse_cursor,
    parse_limit,
)


@pytest.mark.parametrize("seq", [0, 1, 41, 10_000, 999_999_999_999])
def test_cursor_round_trip(seq: int) -> None:
    """A cursor the store issues parses back to its position."""
    assert parse_cursor(encode_cursor(seq)) == seq


@pytest.mark.parametrize("raw", [None, ""])
def test_no_cursor_starts_at_the_beginning(raw: str | None) -> None:
    """An absent or empty cursor means the first page."""
    assert parse_cursor(raw) == 0


@pytest.mark.parametrize(
    "raw",
    ["abc", "c2VxOjI=", "c2VxOjI.", "c2VxOi0x", "c2VxOjAx", "c2VxOmFi", "x" * 65,
     encode_cursor(5) + "A"],
)
def test_foreign_cursors_are_refused(raw: str) -> None:
    """Anything but a canonical `seq:N` cursor raises InvalidParameter naming `cursor`."""
    with pytest.raises(InvalidParameter) as caught:
        parse_cursor(raw)
    assert caught.value.parameter == "cursor"


def test_limits() -> None:
    """The limit defaults to 100, accepts 1 to 1000 and refuses anything else."""
    assert parse_limit(None) == parse_limit("") == DEFAULT_LIMIT
    assert parse_limit("1") == 1 and parse_limit(str(MAX_LIMIT)) == MAX_LIMIT
    for raw in ("0", "1001", "-5", "1e3", " 5", "５"):
        with pytest.raises(InvalidParameter):
            parse_limit(raw)


def test_page_resumes_after_the_last_position_even_if_it_vanished() -> None:
    """A cursor at a position no longer present resumes at the next one, skipping nothing."""
    page = Page([2, 4, 6, 8], [b"2", b"4", b"6", b"8"])
    assert json.loads(page.render(0, 2)) == {"records": [2, 4], "next": encode_cursor(4)}
    assert json.loads(page.render(5, 10)) == {"records": [6, 8], "next": None}
    assert json.loads(page.render(8, 10)) == {"records": [], "next": None}


def test_exact_last_page_has_no_next() -> None:
    """When a page ends exactly at the last record, next is null."""
    page = Page([1, 2, 3], [b"1", b"2", b"3"])
    assert json.loads(page.render(0, 3))["next"] is None
    assert json.loads(page.render(0, 2))["next"] == encode_cursor(2)
