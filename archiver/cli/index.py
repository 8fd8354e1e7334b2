"""Index commands: ``archiver reindex`` and ``archiver index status``.

Registered on the main app by ``register(app)`` (called from ``archiver/cli/__init__.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from archiver.cli.archive import open_runtime
from archiver.indexing.follower import active_generation

if TYPE_CHECKING:
    pass

index_app = typer.Typer(no_args_is_help=True, help="The search index (derived from the store).")



def reindex_command() -> None:
    """Rebuild the search index from the store and swap it in.

    Builds a fresh index from the object store alone; searches keep working meanwhile.
    """
    from archiver.cli.progress import progress_reporter
    from archiver.indexing.reindex import reindex

    runtime = open_runtime()
    try:
        with progress_reporter("reindexing", "leaves") as progress:
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
    runtime = open_runtime()
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
