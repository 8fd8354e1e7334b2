"""The app-and-token setup the case and export tests share: a running app on the
embedded default and on real MinIO + Elasticsearch, wrapped as a seedable ``Archive``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.api.conftest import drop_es_alias
from tests.integration.cases.seed import Archive
from tests.support.apps import backend_settings, running_app

BACKENDS = ["embedded", pytest.param("servers", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    settings = backend_settings(request, tmp_path, request.param, inline_workers=False)
    with running_app(settings) as (client, runtime):
        try:
            yield Archive(client, runtime)
        finally:
            drop_es_alias(runtime)
