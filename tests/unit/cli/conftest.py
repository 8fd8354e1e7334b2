"""The CLI commands configure logging to the ``sys.stderr`` of the moment, which is
``capsys``'s buffer inside these tests: restore the logging set-up afterwards, so later
tests never write to a closed buffer."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
