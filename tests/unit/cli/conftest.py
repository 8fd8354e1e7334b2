"""The CLI commands configure logging to the ``sys.stderr`` of the moment, which is
``capsys``'s buffer inside these tests: restore the logging set-up afterwards, so later
tests never write to a closed buffer. A uvicorn started in a test sets its own loggers'
levels (``log_level="warning"``): those are restored too, so a later test still sees
uvicorn's info lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

_LIBRARIES = ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = [logging.getLogger(name) for name in _LIBRARIES]
    library_state = [(lib.level, list(lib.handlers), lib.propagate) for lib in libraries]
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)
    for lib, (lib_level, lib_handlers, propagate) in zip(libraries, library_state, strict=True):
        lib.setLevel(lib_level)
        lib.handlers[:] = lib_handlers
        lib.propagate = propagate
