"""Structured JSON logs (structlog) that never carry secrets or message content.

A processor drops any event field whose name suggests content or a secret, so a
careless ``log.info(..., body=...)`` cannot leak what the archive protects.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_FORBIDDEN_PARTS = (
    "body",
    "text",
    "content",
    "secret",
    "token",
    "password",
    "authorization",
    "key",
    "phone",
    "wa_id",
    "name",
    "caption",
)
_ALLOWED = frozenset({"event", "level", "timestamp", "logger", "key_id", "token_id", "object_key"})


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for field in list(event):
        if field in _ALLOWED:
            continue
        lowered = field.lower()
        if any(part in lowered for part in _FORBIDDEN_PARTS):
            event[field] = "[redacted]"
    return event


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
