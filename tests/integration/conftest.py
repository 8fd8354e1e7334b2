"""Fixtures shared by the integration folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.meta import FakeMeta
from tests.support.meta_app import TOKEN


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    """Meta's Graph API on a real loopback socket, accepting ``TOKEN``."""
    with FakeMeta(token=TOKEN) as server:
        yield server
