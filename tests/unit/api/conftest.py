from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from archiver.runtime import Runtime
from tests.support.apps import embedded_settings, running_app


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    with running_app(embedded_settings(tmp_path / "data")) as pair:
        yield pair
