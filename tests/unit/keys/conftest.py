"""Key-store tests run on the real embedded StateStore (SQLite), never a stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.keys import KeyStore, LocalKek
from archiver.store.state_sqlite import SqliteStateStore


@pytest.fixture
def state(tmp_path: Path) -> Iterator[SqliteStateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def kek() -> LocalKek:
    return LocalKek.generate()


@pytest.fixture
def store(state: SqliteStateStore, kek: LocalKek) -> KeyStore:
    return KeyStore(state, kek, clock=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
