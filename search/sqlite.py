"""``SearchIndex`` embedded in one SQLite file (Python's ``sqlite3``, FTS5).

Tables: ``docs`` holds each document as JSON plus the filter columns (list fields as JSON
arrays); ``names_fts`` holds a contact's names for ``contact:``; ``fts`` is an FTS5
table over ``text`` sharing ``docs.rid`` as rowid (``unicode61 remove_diacritics 2``, with
combining marks as word characters so Devanagari vowel signs do not split words).
The query AST becomes SQL: each full-text leaf is ``rid IN (SELECT rowid FROM fts WHERE
fts MATCH ?)``, so AND/OR/NOT mix freely with field clauses. ``PRAGMA secure_delete`` zeroes
freed pages so erased text does not linger; ``force_merge_expunge`` also merges FTS5
segments and vacuums. Differences from Elasticsearch are listed in ``docs/search.md``.

The file is created 0600 before SQLite opens it (SQLite gives its ``-wal`` and ``-shm``
files the database file's mode), in a folder created 0700: the index holds plaintext.

A rebuild writes a fresh file (``create_fresh_index``) and ``swap_alias`` renames it over
the live one (atomic on POSIX). One process owns the file; threads share one connection
under a lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search._common import (
    FACET_SIZE,
    FACETS,
    MARK_CLOSE,
    MARK_OPEN,
    check,
    decode_cursor,
    encode_cursor,
    filter_terms,
    fingerprint,
    render_highlight,
    request_dates,
)
from search.documents import FILTER_COLUMNS, LIST_FIELDS, validate
from search.errors import IndexUnavailable, SearchError
from search.port import Document, Hit, RebuildableIndex, SearchRequest, SearchResult
from search.query import (
    FIELDS,
    NAME_FIELDS,
    And,
    DateRange,
    Field,
    MatchAll,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    parse_date_bound,
    text_leaves,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLS = ", ".join(f'"{c}"' for c in (*FILTER_COLUMNS, *LIST_FIELDS))
_LIST_COLS = ", ".join(f"\"{c}\" TEXT NOT NULL DEFAULT '[]'" for c in LIST_FIELDS)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS docs (
  rid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  ts INTEGER NOT NULL,  -- epoch milliseconds, like an Elasticsearch date
  {", ".join(f'"{c}" TEXT' for c in FILTER_COLUMNS)},
  {_LIST_COLS},
  doc TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
  text, tokenize="unicode61 remove_diacritics 2 categories 'L* N* Co Mc Mn'"
);
-- A contact's names (contact-sync and profile), for ``contact:"Pablo Morales"``.
CREATE VIRTUAL TABLE IF NOT EXISTS names_fts USING fts5(
  contact_name, contact_profile_name,
  tokenize="unicode61 remove_diacritics 2 categories 'L* N* Co Mc Mn'"
);
"""
# After the columns are known to exist (``_add_missing_columns``): an index file written
# before a column was added gets it first, and only then an index over it.
_INDEXES = """
CREATE INDEX IF NOT EXISTS docs_ts ON docs(ts, id);
DROP INDEX IF EXISTS docs_number_ts;
CREATE INDEX IF NOT EXISTS docs_pnid_ts ON docs(phone_number_id, ts);
"""
_NAME_FIELDS = ("contact_name", "contact_profile_name")


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring an index file of an older schema up to ``FILTER_COLUMNS`` and ``LIST_FIELDS``:
    add each missing column and fill it from the stored document (``phone_number_id``
    became a filter column when it became the number identity; the documents always
    carried it). Event fields of documents indexed before them come with a reindex."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(docs)")}
    for column in FILTER_COLUMNS:
        if column in have:
            continue
        conn.execute(f'ALTER TABLE docs ADD COLUMN "{column}" TEXT')
        conn.execute(
            f'UPDATE docs SET "{column}" = json_extract(doc, ?)',  # noqa: S608 - fixed column names
            (f"$.{column}",),
        )
    for column in LIST_FIELDS:
        if column in have:
            continue
        conn.execute(f"ALTER TABLE docs ADD COLUMN \"{column}\" TEXT NOT NULL DEFAULT '[]'")
        conn.execute(
            f'UPDATE docs SET "{column}" = COALESCE(json_extract(doc, ?), \'[]\')',  # noqa: S608 - fixed column names
            (f"$.{column}",),
        )


def _create_private(path: Path) -> None:
    """Create the database file empty with mode 0600 unless it exists (never chmod'ed after
    the fact, so it is not readable by others even for a moment)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _ms(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def _ms_ceil(instant: datetime) -> int:
    # t_ms >= x  <=>  t_ms >= ceil(x): bounds with microseconds compare like ES millis.
    return -((_EPOCH - instant) // timedelta(milliseconds=1))


def _fts_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _delete_rid(db: sqlite3.Connection, rid: int) -> None:
    db.execute("DELETE FROM fts WHERE rowid = ?", (rid,))
    db.execute("DELETE FROM names_fts WHERE rowid = ?", (rid,))
    db.execute("DELETE FROM docs WHERE rid = ?", (rid,))


def fts_expr(leaf: Term | Prefix | Phrase) -> str:
    """One FTS5 query expression (sqlite.org/fts5.html §3)."""
    if isinstance(leaf, Prefix):
        return _fts_string(leaf.text) + "*"
    if isinstance(leaf, Phrase) and leaf.slop is not None:
        words = " ".join(_fts_string(w) for w in leaf.text.split())
        return f"NEAR({words}, {leaf.slop})"
    return _fts_string(leaf.text)


def _in_fields(fields: tuple[str, ...], values: list[str]) -> tuple[str, list[Any]]:
    marks = ", ".join("?" * len(values))
    parts, params = [], []
    for f in fields:
        if f in LIST_FIELDS:
            parts.append(f'EXISTS (SELECT 1 FROM json_each(d."{f}") WHERE value IN ({marks}))')  # noqa: S608 - fixed column names and placeholders; values are bound
        else:
            parts.append(f'd."{f}" IN ({marks})')
        params += values
    return "(" + " OR ".join(parts) + ")", params


def _dates(r: DateRange) -> tuple[str, list[Any]]:
    parts, params = [], []
    if r.gte is not None:
        parts.append("d.ts >= ?")
        params.append(_ms_ceil(r.gte))
    if r.lt is not None:
        parts.append("d.ts < ?")
        params.append(_ms_ceil(r.lt))
    return "(" + (" AND ".join(parts) or "1") + ")", params


def to_sql(node: Node) -> tuple[str, list[Any]]:
    """A WHERE condition over ``docs d`` for one AST node."""
    if isinstance(node, MatchAll):
        return "1", []
    if isinstance(node, Term | Prefix | Phrase):
        return "d.rid IN (SELECT rowid FROM fts WHERE fts MATCH ?)", [fts_expr(node)]
    if isinstance(node, Field):
        sql, params = _in_fields(FIELDS[node.name], [node.value])
        if node.name in NAME_FIELDS and re.search(r"\w", node.value):
            # Names as a phrase (FTS5 folds case and diacritics): OR with the exact ids.
            sql = f"({sql} OR d.rid IN (SELECT rowid FROM names_fts WHERE names_fts MATCH ?))"  # noqa: S608 - our own fragment; values are bound
            params = [*params, _fts_string(node.value)]
        return sql, params
    if isinstance(node, DateRange):
        return _dates(node)
    if isinstance(node, Not):
        sql, params = to_sql(node.child)
        return f"NOT {sql}", params
    if isinstance(node, And | Or):
        parts = [to_sql(c) for c in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]
    raise TypeError(node)  # pragma: no cover - Node is a closed union


class SqliteIndex:
    """``SearchIndex`` in the SQLite file ``path`` (created on ``ensure_index``)."""

    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    # ---- connection --------------------------------------------------------------------

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            _create_private(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            _add_missing_columns(conn)
            conn.executescript(_INDEXES)
        except (sqlite3.Error, OSError) as e:
            raise IndexUnavailable(f"cannot open the index at {path}: {e}") from e
        return conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self._conn = self._open(self.path)
            try:
                yield self._conn
            except sqlite3.OperationalError as e:
                raise IndexUnavailable(f"index error: {e}") from e
            except sqlite3.Error as e:
                raise SearchError(f"index error: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- lifecycle ---------------------------------------------------------------------

    def ping(self) -> None:
        with self._db() as db:
            db.execute("SELECT 1").fetchone()

    def ensure_index(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._db():
            pass

    def create_fresh_index(self) -> str:
        """Create an empty index file beside the live one; return its path."""
        fresh = self.path.with_name(f"{self.path.name}.fresh-{datetime.now(UTC):%Y%m%d%H%M%S%f}")
        self._open(fresh).close()
        return str(fresh)

    def swap_alias(self, new_name: str) -> list[str]:
        """Atomically replace the live file with ``new_name``; returns the replaced path."""
        with self._lock:
            self.close()
            # Closing the last connection checkpoints and removes the WAL; one left behind
            # means another connection still has the file open, and renaming over it would
            # lose that connection's writes.
            if Path(f"{self.path}-wal").exists():
                raise SearchError(f"{self.path} is open elsewhere; cannot swap it")
            os.replace(new_name, self.path)
        return [str(self.path)]

    def refresh(self) -> None:
        """Writes are visible at commit; nothing to do."""

    def force_merge_expunge(self) -> None:
        """Merge FTS5 segments (dropping deleted entries), checkpoint the WAL and vacuum."""
        with self._db() as db:
            db.execute("INSERT INTO fts(fts) VALUES('optimize')")
            db.execute("INSERT INTO names_fts(names_fts) VALUES('optimize')")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # VACUUM wrote through the WAL

    # ---- writes ------------------------------------------------------------------------

    def upsert(self, docs: Iterable[Document], *, index: str | None = None) -> int:
        if index is not None:
            conn = self._open(Path(index))
            try:
                return self._upsert(conn, docs)
            finally:
                conn.close()
        with self._db() as db:
            return self._upsert(db, docs)

    @staticmethod
    def _upsert(db: sqlite3.Connection, docs: Iterable[Document]) -> int:
        written = 0
        insert = (
            f"INSERT INTO docs (id, ts, {_COLS}, doc) "  # noqa: S608 - fixed column names
            f"VALUES (?, ?, {', '.join('?' * (len(FILTER_COLUMNS) + len(LIST_FIELDS)))}, ?)"
        )
        db.execute("BEGIN")
        try:
            for raw in docs:
                doc = validate(raw)
                row = db.execute("SELECT rid FROM docs WHERE id = ?", (doc["id"],)).fetchone()
                if row is not None:
                    _delete_rid(db, row[0])
                cur = db.execute(insert, (
                    doc["id"], _ms(parse_date_bound(doc["ts"])[0]),
                    *(doc.get(c) for c in FILTER_COLUMNS),
                    *(json.dumps(doc.get(c, [])) for c in LIST_FIELDS),
                    json.dumps(doc, ensure_ascii=False),
                ))  # fmt: skip
                db.execute(
                    "INSERT INTO fts (rowid, text) VALUES (?, ?)",
                    (cur.lastrowid, doc.get("text") or ""),
                )
                if any(doc.get(f) for f in _NAME_FIELDS):  # one column each: no phrase spans two
                    db.execute(
                        "INSERT INTO names_fts (rowid, contact_name, contact_profile_name) "
                        "VALUES (?, ?, ?)",
                        (cur.lastrowid, *(str(doc.get(f) or "") for f in _NAME_FIELDS)),
                    )
                written += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return written

    def delete_ids(self, ids: Iterable[str]) -> int:
        deleted = 0
        with self._db() as db:
            db.execute("BEGIN")
            try:
                for doc_id in ids:
                    row = db.execute("SELECT rid FROM docs WHERE id = ?", (doc_id,)).fetchone()
                    if row is None:
                        continue
                    _delete_rid(db, row[0])
                    deleted += 1
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return deleted

    def delete_matching(self, request: SearchRequest) -> int:
        where, params = self._where(request)
        with self._db() as db:
            ids = [r[0] for r in db.execute(f"SELECT d.id FROM docs d WHERE {where}", params)]  # noqa: S608 - only our own SQL fragments; values are bound
        return self.delete_ids(ids)

    # ---- reads -------------------------------------------------------------------------

    def get(self, doc_id: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT doc FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def _where(self, request: SearchRequest, node: Node | None = None) -> tuple[str, list[Any]]:
        node = check(request) if node is None else node
        parts = [to_sql(node)]
        parts += [_in_fields(fields, values) for fields, values in filter_terms(request)]
        dates = request_dates(request)
        if dates is not None:
            parts.append(_dates(dates))
        return " AND ".join(p[0] for p in parts), [x for p in parts for x in p[1]]

    def count(self, request: SearchRequest) -> int:
        where, params = self._where(request)
        with self._db() as db:
            return int(
                db.execute(f"SELECT COUNT(*) FROM docs d WHERE {where}", params).fetchone()[0]  # noqa: S608 - see delete_matching
            )

    def search(self, request: SearchRequest) -> SearchResult:
        node = check(request)
        where, params = self._where(request, node)
        leaves = text_leaves(node)
        match = " OR ".join(fts_expr(leaf) for leaf in leaves) or None
        with self._db() as db:
            total = int(
                db.execute(f"SELECT COUNT(*) FROM docs d WHERE {where}", params).fetchone()[0]  # noqa: S608 - see delete_matching
            )
            facets = {f: self._facet(db, f, where, params) for f in request.facets}
            hits, cursor = self._page(db, request, where, params, match)
        return SearchResult(total=total, hits=hits, next_cursor=cursor, facets=facets)

    @staticmethod
    def _facet(db: sqlite3.Connection, facet: str, where: str, params: list[Any]) -> dict[str, int]:
        field = FACETS[facet]
        key = "strftime('%Y-%m-%d', d.ts / 1000, 'unixepoch')" if field == "ts" else f'd."{field}"'
        order = "k" if field == "ts" else "n DESC, k"
        rows = db.execute(
            f"SELECT {key} AS k, COUNT(*) AS n FROM docs d WHERE {where} AND k IS NOT NULL "  # noqa: S608 - see delete_matching
            f"GROUP BY k ORDER BY {order} LIMIT {FACET_SIZE}",
            params,
        )
        return {str(k): int(n) for k, n in rows}

    def _page(
        self,
        db: sqlite3.Connection,
        request: SearchRequest,
        where: str,
        params: list[Any],
        match: str | None,
    ) -> tuple[list[Hit], str | None]:
        if request.size == 0:
            return [], None
        relevance = request.sort == "relevance"
        # bm25() is lower-is-better; documents matched only by field clauses score 0.
        score = "COALESCE(sc.s, 0)" if match else "0"
        join = ("LEFT JOIN (SELECT rowid AS r, bm25(fts) AS s FROM fts WHERE fts MATCH ?) sc "
                "ON sc.r = d.rid") if match else ""  # fmt: skip
        key, order = (score, "ASC") if relevance else (
            "d.ts", "ASC" if request.sort == "time_asc" else "DESC")  # fmt: skip
        keyset, kparams = "1", []
        if request.cursor:
            state = decode_cursor(request.cursor, request)
            cmp = ">" if order == "ASC" else "<"
            keyset = f"({key} {cmp} ? OR ({key} = ? AND d.id > ?))"
            kparams = [state["k"], state["k"], state["id"]]
        sql = (
            f"SELECT d.rid, d.id, d.doc, {key}, {score} FROM docs d {join} "  # noqa: S608 - see delete_matching
            f"WHERE {where} AND {keyset} ORDER BY {key} {order}, d.id ASC LIMIT ?"
        )
        rows = db.execute(
            sql, [*([match] if match else []), *params, *kparams, request.size + 1]
        ).fetchall()
        more = len(rows) > request.size
        rows = rows[: request.size]
        hits = [
            Hit(
                id=doc_id,
                doc=json.loads(doc),
                score=-float(s) if relevance else None,
                highlights=self._highlight(db, rid, match) if request.highlight and match else {},
            )
            for rid, doc_id, doc, _k, s in rows
        ]
        cursor = None
        if more:
            last = rows[-1]
            cursor = encode_cursor({"f": fingerprint(request), "k": last[3], "id": last[1]})
        return hits, cursor

    @staticmethod
    def _highlight(db: sqlite3.Connection, rid: int, match: str) -> dict[str, list[str]]:
        row = db.execute(
            "SELECT snippet(fts, 0, ?, ?, '…', 32) FROM fts WHERE fts MATCH ? AND rowid = ?",
            (MARK_OPEN, MARK_CLOSE, match, rid),
        ).fetchone()
        if row is None or MARK_OPEN not in (row[0] or ""):
            return {}
        return {"text": [render_highlight(row[0])]}


if TYPE_CHECKING:  # mypy proves the adapter matches the port; nothing runs

    def _conforms(ix: SqliteIndex) -> RebuildableIndex:
        return ix
