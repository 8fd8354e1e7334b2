"""Structured JSON logs (structlog) that never carry secrets or message content.

A processor drops any event field whose name suggests content or a secret, so a
careless ``log.info(..., body=...)`` cannot leak what the archive protects.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

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


# Libraries that log routine work at INFO: APScheduler ("Running job …" every few
# seconds, forever), httpx and the Elasticsearch transport (one line per request, with
# its URL and query string). That is DEBUG to an operator; their warnings and errors stay.
_CHATTY = ("apscheduler", "httpx", "httpcore", "elastic_transport")


class _LibraryChatter(logging.Filter):
    """Demote the chatty libraries' INFO lines to DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.split(".")[0] in _CHATTY:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


_HANDLER_MARK = "_archiver_handler"


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log line, ours and the libraries' (uvicorn, APScheduler, …), through
    structlog: JSON on ``stream`` (stderr), or readable key=value when it is a terminal.
    Idempotent: calling it again replaces the handler it installed."""
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tty = bool(getattr(out, "isatty", lambda: False)())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if tty
        else structlog.processors.JSONRenderer()
    )
    tail: list[Any] = [] if tty else [structlog.processors.format_exc_info]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact,
                *tail,
                renderer,
            ],
        )
    )
    handler.addFilter(_LibraryChatter(numeric))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries that install their own handlers (uvicorn) would print plain text twice.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
