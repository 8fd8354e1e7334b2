"""Token scopes name business numbers by ``phone_number_id`` (the one number identity);
a display number in another shape is refused instead of scoping the token to nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.auth import Role, TokenService
from archiver.errors import BadRequest
from archiver.store.state_sqlite import SqliteStateStore


def test_token_numbers_are_phone_number_ids(tmp_path: Path) -> None:
    tokens = TokenService(SqliteStateStore(tmp_path / "s.db"))
    plain, record = tokens.create(role=Role.LEGAL, name="l", numbers=["106540352242922"])
    assert record.numbers == ["106540352242922"]
    assert tokens.authenticate(plain).numbers == ("106540352242922",)
    for bad in ("+1 555 000 1111", "1555-0001", ""):
        with pytest.raises(BadRequest) as info:
            tokens.create(role=Role.LEGAL, name="l", numbers=[bad])
        assert info.value.code == "token_number_invalid"
