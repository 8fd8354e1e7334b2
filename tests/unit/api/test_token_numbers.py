"""Token scopes name business numbers by ``phone_number_id`` (the one number identity);
a display number in another shape is refused instead of scoping the token to nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.auth import InvalidTokenSpec, Role, TokenService
from archiver.store.state_sqlite import SqliteStateStore


def test_token_numbers_are_phone_number_ids(tmp_path: Path) -> None:
    tokens = TokenService(SqliteStateStore(tmp_path / "s.db"))
    plain, record = tokens.create(role=Role.LEGAL, name="l", numbers=["106540352242922"])
    assert record.numbers == ["106540352242922"]
    assert tokens.authenticate(plain).numbers == ("106540352242922",)
    for bad in ("+1 555 000 1111", "1555-0001", ""):
        with pytest.raises(InvalidTokenSpec) as info:
            tokens.create(role=Role.LEGAL, name="l", numbers=[bad])
        assert info.value.code == "token_number_invalid"


def test_a_number_with_a_leading_zero_or_zero_is_refused(tmp_path: Path) -> None:
    tokens = TokenService(SqliteStateStore(tmp_path / "s.db"))
    for bad in ("0", "0106540352242922"):
        with pytest.raises(InvalidTokenSpec) as info:
            tokens.create(role=Role.LEGAL, name="l", numbers=[bad])
        assert info.value.code == "token_number_invalid"


@pytest.mark.parametrize("days", [float("nan"), float("inf"), 1e20, 0, -1, 3661])
def test_an_expiry_that_is_not_a_sane_number_of_days_is_refused(
    tmp_path: Path, days: float
) -> None:
    tokens = TokenService(SqliteStateStore(tmp_path / "s.db"))
    with pytest.raises(InvalidTokenSpec) as info:
        tokens.create(role=Role.LEGAL, name="l", expires_in_days=days)
    assert info.value.code == "token_expiry_invalid"
    assert list(tokens.list()) == []  # nothing was issued


def test_a_blank_name_is_refused(tmp_path: Path) -> None:
    tokens = TokenService(SqliteStateStore(tmp_path / "s.db"))
    with pytest.raises(InvalidTokenSpec) as info:
        tokens.create(role=Role.LEGAL, name="   ")
    assert info.value.code == "token_name_invalid"
