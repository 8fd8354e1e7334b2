"""Index commands: ``archiver reindex`` and ``archiver index status``.

Registered on the main app by ``register(app)`` (called from ``archiver/cli.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from archiver.indexing.follower import active_generation

if TYPE_CHECKING:
    from archiver.runtime import Runtime

index_app = typer.Typer(no_args_is_help=True, help="The search index (derived from the store).")


def _runtime() -> Runtime:
    from archiver.cli_runtime import open_runtime

    return open_runtime()


def reindex_command() -> None:
    """Rebuild the search index from the store and swap it in.

    Builds a fresh index from the object store alone; searches keep working meanwhile.
    """
    import contextlib
    import sys

    from archiver.indexing.reindex import reindex

    runtime = _runtime()
    try:
        last = [0.0]
        bar: Any = None
        with contextlib.ExitStack() as stack:
            if sys.stderr.isatty():  # a bar for people; periodic lines for log files
                from rich.console import Console
                from rich.progress import Progress

                bar = stack.enter_context(Progress(console=Console(stderr=True)))
                task = bar.add_task("reindexing leaves", total=None)

            def progress(done: int, size: int) -> None:
                import time

                if bar is not None:
                    bar.update(task, completed=done, total=size)
                    return
                now = time.monotonic()
                if now - last[0] >= 2.0:
                    last[0] = now
                    typer.echo(f"  {done:,}/{size:,} leaves", err=True)

            result = reindex(
                index=runtime.index,
                log_reader=runtime.log,
                objects=runtime.objects,
                state=runtime.state,
                keys=runtime.keys,
                pseudo=runtime.pseudo,
                progress=progress,
            )
    finally:
        runtime.close()
    typer.echo(
        f"reindexed {result.leaves:,} leaves into {result.fresh} in {result.seconds:.1f} s; "
        f"generation {result.previous_generation} -> {result.generation}; "
        f"replaced: {', '.join(result.replaced) or 'nothing'}"
    )


@index_app.command("status")
def index_status() -> None:
    """Show the index's generation, cursor, log size and lag."""
    runtime = _runtime()
    try:
        size = runtime.log.size()
        cursor = runtime.follower.cursor()
        typer.echo(
            f"backend={runtime.index.name} generation={active_generation(runtime.state)} "
            f"cursor={cursor} log_size={size} lag={max(0, size - cursor)}"
        )
    finally:
        runtime.close()


def register(app: typer.Typer) -> None:
    app.command("reindex")(reindex_command)
    app.add_typer(index_app, name="index")
