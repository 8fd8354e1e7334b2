"""Our fast path gives byte-for-byte the same output as the rfc8785 reference."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.records.canonical import dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=1500)
@given(json_values)
def test_same_bytes_as_rfc8785(value: Any) -> None:
    assert dumps(value) == rfc8785.dumps(value)


def test_control_characters_and_non_ascii() -> None:
    value = {"é": "\x00\x1f\x7f\u2028\"\\\n\t\b\f\r", "a": ["ü", "𝄞"], "𝄞": 1, "z": -5}
    assert dumps(value) == rfc8785.dumps(value)
