"""The fast canonical JSON path is byte-for-byte RFC 8785."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from credcore.canonical import canonical_json

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30
)


@settings(max_examples=500)
@given(values)
def test_fast_path_equals_reference(value: object) -> None:
    """Any JSON value encodes to the same bytes as the rfc8785 reference."""
    try:
        expected = rfc8785.dumps(value)
    except Exception:  # the reference refuses some values (e.g. lone surrogates); so may we
        return
    assert canonical_json(value) == expected


def test_known_forms() -> None:
    """Integral floats, small floats, astral keys and CJK text take their JCS form."""
    assert canonical_json({"b": 2.0, "a": 1.5}) == b'{"a":1.5,"b":2}'
    assert canonical_json(1e-7) == b"1e-7"
    assert canonical_json({"\U0001f600": 1, "\ufb01": 2}) == rfc8785.dumps({"\U0001f600": 1, "\ufb01": 2})
    assert canonical_json({"名称": "华为"}) == '{"名称":"华为"}'.encode()
