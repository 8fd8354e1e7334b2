"""The real app over each index backend: SQLite (embedded) and Elasticsearch (real server).

Workers are driven by hand (``inline_workers=False``): ``settle`` processes every captured
batch and runs the index follower to the end of the log, so tests are deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.runtime import Runtime
from tests.support.apps import embedded_settings, running_app

BACKENDS = ["sqlite", pytest.param("elasticsearch", marks=pytest.mark.integration)]


@dataclass
class App:
    client: TestClient
    runtime: Runtime
    backend: str

    def settle(self) -> None:
        self.runtime.processor.sweep()
        # Searches and thread views write audit leaves by group commit: flush them now so
        # the follower's run below reaches the true end of the log.
        self.runtime.audit.flush()
        self.runtime.follower.run_to_end()
        refresh = getattr(self.runtime.index, "refresh", None)
        if callable(refresh):
            refresh()

    def token(self, role: Role, numbers: list[str] | None = None) -> dict[str, str]:
        token, _ = self.runtime.tokens.create(role=role, name=f"{role.value}-test", numbers=numbers)
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, headers: dict[str, str], **params: Any) -> Any:
        return self.client.get(path, headers=headers, params=params)


def backend_settings(backend: str, data_dir: Path, request: pytest.FixtureRequest) -> Any:
    overrides: dict[str, Any] = {"inline_workers": False}
    if backend == "elasticsearch":
        es_url = request.getfixturevalue("es_url")
        overrides |= {
            "index": "elasticsearch",
            "es_url": es_url,
            "es_alias": f"test-searchapi-{uuid.uuid4().hex[:10]}",
        }
    return embedded_settings(data_dir, **overrides)


def drop_es_alias(runtime: Runtime) -> None:
    index: Any = runtime.index
    if index.name == "elasticsearch":
        for name in index.current_indices():
            index.client.indices.delete(index=name)


@pytest.fixture
def make_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    yield from _factory(request, tmp_path)


@pytest.fixture(scope="module")
def make_module_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    yield from _factory(request, tmp_path_factory.mktemp("searchapi"))


def _factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    opened: list[tuple[Any, Runtime]] = []

    def factory(backend: str, **extra: Any) -> App:
        settings = backend_settings(backend, tmp_path / f"data-{len(opened)}", request)
        if extra:
            settings = settings.model_copy(update=extra)
        ctx = running_app(settings)
        client, runtime = ctx.__enter__()
        opened.append((ctx, runtime))
        return App(client, runtime, backend)

    yield factory
    for ctx, runtime in reversed(opened):
        try:
            drop_es_alias(runtime)
        finally:
            ctx.__exit__(None, None, None)
