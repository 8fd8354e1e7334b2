"""Progress of a long command: a rich bar for a person at a terminal, a line every few
seconds for a log file, never on stdout (stdout is the command's output: JSON, findings)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import typer

ProgressCallback = Callable[[int, int | None], None]
LINE_EVERY_S = 2.0


@contextlib.contextmanager
def progress_reporter(label: str, unit: str) -> Iterator[ProgressCallback]:
    """Yield ``progress(done, total)``; ``total`` None means not known yet (a count and a
    spinner instead of a bar)."""
    with contextlib.ExitStack() as stack:
        bar: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            bar = stack.enter_context(Progress(console=Console(stderr=True), transient=False))
            task = bar.add_task(label, total=None)
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            if bar is not None:
                bar.update(task, completed=done, total=total)
                return
            now = time.monotonic()
            if now - last[0] >= LINE_EVERY_S:
                last[0] = now
                of = f"/{total:,}" if total is not None else ""
                typer.echo(f"  {label}: {done:,}{of} {unit}", err=True)

        yield progress
