"""Unreachable backends raise ``IndexUnavailable`` (no server needed: nothing listens)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from search.elastic import ElasticIndex
from search.errors import IndexUnavailable, SearchError
from search.port import SearchRequest
from search.sqlite import SqliteIndex

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_elastic_unreachable() -> None:
    ix = ElasticIndex(f"http://127.0.0.1:{_closed_port()}", request_timeout=2)
    with pytest.raises(IndexUnavailable):
        ix.ping()
    with pytest.raises(IndexUnavailable):
        ix.search(SearchRequest(q="x"))
    with pytest.raises(IndexUnavailable):
        ix.upsert([{"id": "a", "ts": "2024-01-01"}])


def test_elastic_bad_request_is_a_search_error(es_url: str) -> None:
    ix = ElasticIndex(es_url, alias="Not-Lower-Case")
    with pytest.raises(SearchError, match="must be lowercase") as err:
        ix.ensure_index()
    assert not isinstance(err.value, IndexUnavailable)


def test_sqlite_unopenable(tmp_path: Path) -> None:
    ix = SqliteIndex(tmp_path / "missing-dir" / "index.db")
    with pytest.raises(IndexUnavailable):
        ix.ping()


def test_sqlite_swap_refuses_a_file_open_elsewhere(tmp_path: Path) -> None:
    ix = SqliteIndex(tmp_path / "index.db")
    ix.ensure_index()
    other = SqliteIndex(tmp_path / "index.db")
    other.upsert([{"id": "a", "ts": "2024-01-01"}])
    fresh = ix.create_fresh_index()
    with pytest.raises(SearchError, match="open elsewhere"):
        ix.swap_alias(fresh)
    other.close()
    ix.swap_alias(fresh)
    assert ix.count(SearchRequest()) == 0
