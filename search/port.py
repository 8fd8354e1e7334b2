"""The index port. Documents are plain JSON-able dicts keyed by ``id``.

Both adapters (``search.elastic.ElasticIndex`` and ``search.sqlite.SqliteIndex``)
implement ``SearchIndex`` and pass the same contract suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Document = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A search: ``q`` in the documented query syntax (``docs/search.md``) plus filters.

    ``filters`` maps a field name (``from``, ``to``, ``type``, ``origin``, ``direction``,
    ``number``, ``status``, ``conversation``, ...) to the allowed values (OR within a field,
    AND across fields). ``scope_numbers`` restricts results to those business numbers, by
    ``phone_number_id`` (the one number identity; ``None`` = unrestricted); it applies to
    hits, totals and facets alike. ``ids`` restricts results to those document ids (``None``
    = unrestricted), e.g. "this query among the documents just indexed"
    (``archiver.retention.holds.hold_indexed_arrivals``).
    """

    q: str = ""
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    date_from: str | None = None  # ISO 8601, inclusive
    date_to: str | None = None  # ISO 8601, exclusive
    scope_numbers: Sequence[str] | None = None
    sort: Literal["time", "time_asc", "relevance"] = "time"
    size: int = 20
    cursor: str | None = None
    facets: Sequence[str] = ()
    highlight: bool = False
    ids: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    doc: dict[str, Any]
    score: float | None = None
    highlights: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchResult:
    total: int  # exact
    hits: Sequence[Hit]
    next_cursor: str | None
    facets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class SearchIndex(Protocol):
    name: str  # "elasticsearch" or "sqlite"

    def ping(self) -> None:
        """Raise ``search.errors.IndexUnavailable`` when unreachable."""

    def ensure_index(self) -> None:
        """Create the index (mapping, alias) if missing; idempotent."""

    def upsert(self, docs: Iterable[Document]) -> int:
        """Bulk upsert by ``doc["id"]``; return the count written."""

    def search(self, request: SearchRequest) -> SearchResult: ...

    def count(self, request: SearchRequest) -> int: ...

    def delete_matching(self, request: SearchRequest) -> int:
        """Delete the documents the request finds (not ``_delete_by_query``); return count."""

    def delete_ids(self, ids: Iterable[str]) -> int: ...

    def get(self, doc_id: str) -> dict[str, Any] | None: ...


class RebuildableIndex(SearchIndex, Protocol):
    """What ``archiver reindex`` needs beyond ``SearchIndex`` (both adapters provide it):
    build a fresh index beside the live one, then swap it in atomically."""

    def create_fresh_index(self) -> str:
        """Create an empty index (ES: ``<alias>-<timestamp>``; SQLite: a new file)."""

    def upsert(self, docs: Iterable[Document], *, index: str | None = None) -> int:
        """As ``SearchIndex.upsert``; ``index`` writes into a fresh index instead."""

    def swap_alias(self, new_name: str) -> list[str]:
        """Make ``new_name`` the live index in one atomic step; return what it replaced."""

    def refresh(self) -> None:
        """Make every write so far visible to search."""

    def force_merge_expunge(self) -> None:
        """Physically drop deleted documents (after an erasure)."""
