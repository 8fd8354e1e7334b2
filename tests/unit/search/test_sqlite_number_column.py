"""An index file written before ``phone_number_id`` was a filter column (the number
identity) is brought up to date when opened: scope and ``number:`` work on it at once,
without a reindex."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from search.port import SearchRequest
from search.sqlite import SqliteIndex

_OLD_COLUMNS = (
    "business_number", "from", "to", "type", "origin", "direction", "status",
    "conversation", "contact", "contact_user_id", "contact_username", "policy", "kind",
)  # fmt: skip


def _old_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(f"""
        CREATE TABLE docs (
          rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL,
          {", ".join(f'"{c}" TEXT' for c in _OLD_COLUMNS)},
          holds TEXT NOT NULL DEFAULT '[]', doc TEXT NOT NULL);
        CREATE INDEX docs_ts ON docs(ts, id);
        CREATE INDEX docs_number_ts ON docs(business_number, ts);
        CREATE VIRTUAL TABLE fts USING fts5(text);
    """)
    for i, (display, pnid) in enumerate([("15550001111", "111"), ("15550002222", "222")]):
        doc = {"id": f"m{i}", "ts": "2024-01-01T00:00:00Z", "text": "hello",
               "business_number": display, "phone_number_id": pnid}  # fmt: skip
        conn.execute(
            "INSERT INTO docs (rid, id, ts, business_number, doc) VALUES (?, ?, ?, ?, ?)",
            (i + 1, doc["id"], 1_704_067_200_000, display, json.dumps(doc)),
        )
        conn.execute("INSERT INTO fts (rowid, text) VALUES (?, 'hello')", (i + 1,))
    conn.commit()
    conn.close()


def test_an_old_index_file_gets_the_phone_number_id_column(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    _old_file(path)
    index = SqliteIndex(path)
    index.ensure_index()
    assert index.count(SearchRequest(q="hello")) == 2
    assert index.count(SearchRequest(q="hello", scope_numbers=["222"])) == 1
    assert index.count(SearchRequest(q="hello number:111")) == 1
    assert index.count(SearchRequest(q="hello display_number:15550002222")) == 1
    index.close()
    conn = sqlite3.connect(path)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(docs)")}
    conn.close()
    assert "docs_pnid_ts" in indexes and "docs_number_ts" not in indexes
