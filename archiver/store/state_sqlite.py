"""Working state in one SQLite file (the embedded mode's ``StateStore``).

WAL journal so readers never block the writer; ``busy_timeout`` so concurrent writers
(threads or processes on one host; not a network file system, see sqlite.org/wal.html)
wait instead of failing. Every write runs in a ``BEGIN IMMEDIATE`` transaction that takes
the write lock before reading, so a compare-and-swap is atomic across processes.

Tokens come from one counter shared by all keys and never reused, so a key deleted and
created again never gets back a token someone may still hold (no ABA).

Erased key material must leave the file (docs/keys.md, "What destroyed means"): every
connection runs ``PRAGMA secure_delete=ON`` (freed cells and pages are zeroed, so an
overwritten wrapped key leaves no residue in the database file), and :meth:`scrub`
checkpoints the WAL and truncates it to zero bytes (old frames hold old values until then).
The file is created 0600 before SQLite opens it (its ``-wal`` and ``-shm`` files take the
database file's mode), so it is never readable by others, not even for a moment.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archiver.store.errors import PreconditionFailed, StoreError, StoreUnavailable
from archiver.store.port import StateValue

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                                  token INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1),
                                    last INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (id, last) VALUES (1, 0);
"""


class SqliteStateStore:
    """``StateStore`` on SQLite. One connection per thread; safe across processes."""

    name = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = Path(path)
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        with self._errors("open state store"):
            private_dir(self._path.parent)
            private_file(self._path)
            # Persistent in the file; must run outside a transaction.
            self._conn().execute("PRAGMA journal_mode=WAL")
            with self._write() as cur:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")  # per connection, not stored in the file
            self._local.conn = conn
        return conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except sqlite3.OperationalError as exc:
            # "database is locked" after busy_timeout, disk I/O errors, unreachable file.
            raise StoreUnavailable(f"{what}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{what}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.cursor()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def scrub(self, *, attempts: int = 50) -> None:
        """Copy the WAL into the database and truncate it to zero bytes, so values replaced
        or deleted before this call (a shredded wrapped key) are in no frame of the WAL.

        A checkpoint cannot pass a reader's snapshot: it is retried while other connections
        finish; raises StoreUnavailable when it still cannot complete (the caller retries)."""
        with self._errors("scrub"):
            for _ in range(attempts):
                busy, _log, _done = self._conn().execute(
                    "PRAGMA wal_checkpoint(TRUNCATE)"
                ).fetchone()
                if busy == 0:
                    return
                time.sleep(0.02)
        raise StoreUnavailable(f"{self._path}: WAL checkpoint still blocked by a reader")

    def ping(self) -> None:
        with self._errors("ping"):
            self._conn().execute("SELECT 1 FROM counter").fetchone()

    def get(self, key: str) -> StateValue | None:
        with self._errors(f"get {key}"):
            row = (
                self._conn()
                .execute("SELECT value, token FROM state WHERE key = ?", (key,))
                .fetchone()
            )
        if row is None:
            return None
        return StateValue(value=bytes(row[0]), token=str(row[1]))

    def put(
        self,
        key: str,
        value: bytes,
        *,
        if_match: str | None = None,
        if_absent: bool = False,
    ) -> str:
        if if_match is not None and if_absent:
            raise ValueError("if_match and if_absent are exclusive")
        with self._errors(f"put {key}"), self._write() as cur:
            row = cur.execute("SELECT token FROM state WHERE key = ?", (key,)).fetchone()
            if if_absent and row is not None:
                raise PreconditionFailed(f"{key}: already exists")
            if if_match is not None and (row is None or str(row[0]) != if_match):
                raise PreconditionFailed(f"{key}: token does not match")
            cur.execute("UPDATE counter SET last = last + 1 WHERE id = 1")
            token = int(cur.execute("SELECT last FROM counter WHERE id = 1").fetchone()[0])
            cur.execute(
                "INSERT INTO state (key, value, token) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, token = excluded.token",
                (key, value, token),
            )
        return str(token)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete ``key`` (absent is fine unless ``if_match`` is given)."""
        with self._errors(f"delete {key}"), self._write() as cur:
            if if_match is not None:
                row = cur.execute("SELECT token FROM state WHERE key = ?", (key,)).fetchone()
                if row is None or str(row[0]) != if_match:
                    raise PreconditionFailed(f"{key}: token does not match")
            cur.execute("DELETE FROM state WHERE key = ?", (key,))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, in byte order of their UTF-8 (SQLite BINARY collation,
        the same order S3 lists in)."""
        with self._errors(f"list {prefix!r}"):
            rows = (
                self._conn()
                .execute(
                    "SELECT key FROM state WHERE substr(key, 1, ?) = ? ORDER BY key",
                    (len(prefix), prefix),
                )
                .fetchall()
            )
        for (key,) in rows:
            yield str(key)


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the owner only (0700). An existing
    folder that others can read (an older install) is tightened to the owner's bits."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (never chmod'ed after the
    fact: there is no moment when it is readable by others)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)
