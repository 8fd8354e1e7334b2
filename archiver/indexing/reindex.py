"""``archiver reindex``: a fresh index from the object store alone, swapped in without
downtime (the warehouse pattern: build a new index, then move the alias).

1. ``create_fresh_index()`` — ES: a new concrete index; SQLite: a new file beside the live one.
2. A follower of a new *generation* walks the log from leaf 0 into it (its own cursor,
   parked folds and per-subject state, so the live follower is untouched meanwhile).
3. ``swap_alias()`` — ES: one atomic ``_aliases`` call; SQLite: an atomic rename.
4. The new generation becomes active: the app's follower continues from its cursor.

Searches keep answering from the old index until step 3. A live follower that is
mid-batch at step 4 notices and drops its batch (``GenerationRetired``). With the
embedded SQLite index, run this while the server is stopped (one process owns the file).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from archiver.errors import ConfigError
from archiver.indexing.follower import IndexFollower, active_generation, set_active_generation
from archiver.ingest.ports import KeySource
from archiver.ledger.ports import LogReader
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.port import ObjectStore, StateStore
from search.port import SearchIndex


class Rebuildable(SearchIndex, Protocol):
    def create_fresh_index(self) -> str: ...

    def swap_alias(self, new_name: str) -> list[str]: ...

    def refresh(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ReindexResult:
    generation: str
    previous_generation: str
    fresh: str
    replaced: list[str]
    leaves: int
    seconds: float


def target_view(index: SearchIndex, fresh: str) -> SearchIndex:
    """A ``SearchIndex`` that reads and writes the fresh index directly (not the alias)."""
    if index.name == "elasticsearch":
        from search.elastic import ElasticIndex

        assert isinstance(index, ElasticIndex)
        return ElasticIndex(index.client, alias=fresh, refresh=False)
    from search.sqlite import SqliteIndex

    return SqliteIndex(Path(fresh))


def reindex(
    *,
    index: SearchIndex,
    log_reader: LogReader,
    objects: ObjectStore,
    state: StateStore,
    keys: KeySource,
    pseudo: Pseudonymizer,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 2000,
) -> ReindexResult:
    """Rebuild the index from leaf 0 and swap it in. Raises what the stores and index raise;
    on failure the live index and generation are untouched (the fresh one is left behind)."""
    if not all(hasattr(index, m) for m in ("create_fresh_index", "swap_alias")):
        raise ConfigError(f"the {index.name} index cannot be rebuilt in place")
    rebuildable = cast(Rebuildable, index)
    started = time.monotonic()
    previous = active_generation(state)
    generation = f"rb-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    fresh = rebuildable.create_fresh_index()
    target = target_view(index, fresh)
    follower = IndexFollower(
        log_reader=log_reader,
        objects=objects,
        state=state,
        keys=keys,
        index=target,
        pseudo=pseudo,
        generation=generation,
    )
    leaves = 0
    while consumed := follower.catch_up(batch, visible=False):  # refreshed once, below
        leaves += consumed
        if progress is not None:
            progress(follower.cursor(), log_reader.size())
    _refresh(target)
    closer: Any = getattr(target, "close", None)
    if callable(closer):
        closer()
    replaced = rebuildable.swap_alias(fresh)
    set_active_generation(state, generation)
    return ReindexResult(
        generation=generation,
        previous_generation=previous,
        fresh=fresh,
        replaced=replaced,
        leaves=leaves,
        seconds=time.monotonic() - started,
    )


def _refresh(target: SearchIndex) -> None:
    refresh: Any = getattr(target, "refresh", None)
    if callable(refresh):
        refresh()
