"""The pure parts of the per-subject lookup, and the follower hook's no-hold fast path
(on the SQLite state store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archiver.keyspace import HOLDS_OPEN_KEY as OPEN_KEY
from archiver.ledger.entry import EntryKind, make_entry
from archiver.retention.arrivals import hold_indexed_arrivals
from archiver.retention.subject_lookup import leaf_runs, record_refs, subject_records_indexed
from archiver.store.state_sqlite import SqliteStateStore
from search.port import SearchRequest

T = datetime(2026, 1, 2, tzinfo=UTC)


def test_leaf_runs_group_contiguous_leaves() -> None:
    assert leaf_runs([7, 3, 4, 5, 9, 8, 4]) == [(3, 6), (7, 10)]
    assert leaf_runs([]) == []


def test_record_refs_keep_only_record_leaves() -> None:
    entries = [
        make_entry(EntryKind.RAW, time=T, key="raw/2026/01/02/b", version_id="v0",
                   sha256="0" * 64, size=1).data,
        make_entry(EntryKind.RECORD, time=T, key="records/ab/r_ab1", version_id="v1",
                   sha256="1" * 64, size=1, record_id="r_ab1", event="message").data,
        make_entry(EntryKind.KEY_CREATED, time=T, subject="s_x", key_id="k", event="created").data,
    ]  # fmt: skip
    assert record_refs(entries) == {("records/ab/r_ab1", "v1")}


class _NoLog:
    def append(self, entries: Any) -> list[int]:
        raise AssertionError("must not append")

    def size(self) -> int:
        return 0

    def entries(self, start: int, end: int) -> list[bytes]:
        raise AssertionError("must not read")


def test_lookup_declines_when_a_granted_batch_is_not_finished(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.db")
    assert subject_records_indexed(None, state, _NoLog(), "s_x") is None  # type: ignore[arg-type]  # no grant: never touches the store
    state.put("capgrants/s_x/b1", json.dumps({"slots": [0]}).encode())
    state.put("proc/b1", json.dumps({"status": "claimed", "owner": "o", "until": 1}).encode())
    assert subject_records_indexed(None, state, _NoLog(), "s_x") is None  # type: ignore[arg-type]  # in flight: declines before reading


class _Index:
    def __init__(self) -> None:
        self.requests: list[SearchRequest] = []

    def search(self, request: SearchRequest) -> Any:
        self.requests.append(request)
        raise RuntimeError("index down")


def test_hook_costs_one_read_without_a_query_hold_and_never_raises(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "state.db")
    index = _Index()

    def hook() -> int:
        return hold_indexed_arrivals(index=index, objects=None, state=state,  # type: ignore[arg-type]  # unused on these paths
                                     log=_NoLog(), keys=None, doc_ids=["r_1"])

    assert hook() == 0  # no holds/_open at all
    state.put(OPEN_KEY, json.dumps({"h_1": {"subjects": ["s_x"], "conversations": [],
                                            "numbers": None, "query": None}}).encode())
    assert hook() == 0 and index.requests == []  # open, but no query hold: no search
    state.put(OPEN_KEY, json.dumps({"h_2": {"subjects": [], "conversations": [],
                                            "numbers": ["106"], "query": "zanzibar"}}).encode())
    assert hook() == 0  # the index fails: logged, indexing goes on
    assert [(r.q, r.ids, list(r.scope_numbers or [])) for r in index.requests] == [
        ("zanzibar", ["r_1"], ["106"])]
