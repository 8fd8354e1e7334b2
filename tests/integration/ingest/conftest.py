"""Fixtures of the ingest tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.runtime import Runtime
from tests.support.apps import backend_settings


@pytest.fixture(params=["embedded", pytest.param("servers", marks=pytest.mark.integration)])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the embedded backends, and on MinIO + Elasticsearch; workers by hand."""
    settings = backend_settings(request, tmp_path / "data", request.param, inline_workers=False)
    rt = Runtime.open(settings)
    rt.index.ensure_index()
    try:
        yield rt
    finally:
        rt.close()
