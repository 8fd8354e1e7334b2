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


def test_large_integers_are_kept_exactly_with_a_marker() -> None:
    """Issue 15 #8: a template id above 2^53 made RFC 8785 raise (IntegerDomainError) and
    stalled its batch. Outside ±(2^53 - 1) an integer is written exactly, marked."""
    big = 2**53 + 123456789
    value = {"message_template_id": big, "ids": [-(2**64), 2**53 - 1, 7], "x": 1.5}
    assert dumps(value) == (
        b'{"ids":[{"$bigint":"-18446744073709551616"},9007199254740991,7],'
        b'"message_template_id":{"$bigint":"9007199378197781"},"x":1.5}'
    )
    # In range, nothing changes: the same bytes as the reference.
    assert dumps({"a": 2**53 - 1, "b": -(2**53) + 1}) == rfc8785.dumps(
        {"a": 2**53 - 1, "b": -(2**53) + 1})
