from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.duration import Period


@pytest.mark.parametrize(("text", "want"), [
    ("P6Y", Period(6, 0, 0)), ("P18M", Period(0, 18, 0)), ("P2W", Period(0, 0, 14)),
    ("P1Y2M3D", Period(1, 2, 3)),
])
def test_parse(text: str, want: Period) -> None:
    assert Period.parse(text) == want


@pytest.mark.parametrize("bad", ["P", "6Y", "P6", "PT6H", "P1.5Y", "P-1Y", "", "six years"])
def test_refuse(bad: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        Period.parse(bad)


def test_calendar_clamp() -> None:
    assert Period(1, 0, 0).add_to(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(2025, 2, 28,
                                                                                tzinfo=UTC)
    assert Period(0, 1, 0).add_to(datetime(2024, 1, 31, tzinfo=UTC)) == datetime(2024, 2, 29,
                                                                                tzinfo=UTC)


@given(st.integers(0, 50), st.integers(0, 30), st.integers(0, 400),
       st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)))
def test_never_before_start(y: int, m: int, d: int, start: datetime) -> None:
    assert Period(y, m, d).add_to(start) >= start
