"""The scope walk keeps what it remembers (ids yielded, message refs found) on disk:
over a real SQLite index, the Python heap does not grow with the number of records
walked, and the walk still yields every record once (issue 11, bench at 100,000)."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.cases.model import Scope
from archiver.cases.scope import SpooledSet, records_in_scope, scope_documents
from archiver.indexing.documents import message_document
from search.sqlite import SqliteIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PNID = "100200300400"


def _seed(index: SqliteIndex, n: int) -> list[str]:
    docs = []
    for i in range(n):
        header = {
            "record_id": f"r_{i:08d}", "kind": "message", "direction": "inbound",
            "origin": "customer", "message_type": "text",
            "business": {"phone_number_id": PNID, "display_phone_number": "15550100200"},
            "occurred_at": (T0 + timedelta(seconds=i)).isoformat(),
            "conversation": f"c_{i // 100:05d}", "message_ref": f"m_{i:08d}",
            "subject": f"s_{i // 100:05d}",
        }  # fmt: skip
        docs.append(message_document(header, {"texts": [f"hello {i}"]}, i))
    index.upsert(docs)
    return [d["id"] for d in docs]


def test_scope_walk_heap_stays_flat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archiver.cases.scope as scope_module

    monkeypatch.setattr(scope_module, "PAGE", 100)  # both samples at a page's last hit
    index = SqliteIndex(tmp_path / "index.db")
    ids = _seed(index, 3_000)
    case = {"scope": Scope(numbers=(PNID,)).to_json(), "custodians": {}}
    heap: dict[int, int] = {}
    n = 0
    tracemalloc.start()
    try:
        for n, _ in enumerate(records_in_scope(index, case), start=1):
            if n in (1_000, 3_000):
                heap[n] = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert n == 3_000
    # Two Python sets of ids and message refs grew ~500 KB over this span.
    assert heap[3_000] - heap[1_000] < 100_000, heap
    assert sorted(records_in_scope(index, case)) == ids  # every record, once


def test_scope_documents_hand_on_the_walks_documents(tmp_path: Path) -> None:
    """An export reads no index document a second time: the walk gives it with the id."""
    index = SqliteIndex(tmp_path / "index.db")
    ids = _seed(index, 30)
    case = {"scope": Scope(numbers=(PNID,)).to_json(), "custodians": {}}
    got = list(scope_documents(index, case))
    assert [rid for rid, _ in got] == ids
    for rid, doc in got:
        assert doc is not None and doc == {**(index.get(rid) or {}), "id": rid}


def test_spooled_set() -> None:
    with SpooledSet() as s:
        assert s.add("a") and not s.add("a") and "a" in s and "b" not in s
        s.add_unit("c2", "m1")
        s.add_unit("c1", "m1")
        s.add_unit("c1", "m1")
        assert s.has_unit("c1", "m1") and not s.has_unit("c2", "m2")
        assert list(s.unit_conversations()) == ["c1", "c2"]
