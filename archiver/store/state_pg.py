"""Working state in PostgreSQL (``ARCHIVER_STATE=postgres``): the coordination database of
the Tessera-style split, object storage for evidence, a database for the small mutable
state (issue 10: state round trips to MinIO dominated the pipeline).

Driver: psycopg 3 (``psycopg[binary]``: the wheel bundles libpq, so no system library or
compiler is needed on a fresh machine). One connection per thread and process, in
autocommit: every operation is one SQL statement, atomic on its own, so a
compare-and-swap needs no explicit transaction and holds no lock between round trips.
Connections made before a ``fork`` are never reused by the child (pid check).

Semantics match the SQLite and S3 stores (the contract suite runs all three):

- tokens come from one sequence shared by all keys and never reused, so a key deleted
  and created again never gets back a token someone may still hold (no ABA);
- ``if_absent`` is ``INSERT … ON CONFLICT DO NOTHING``; ``if_match`` is
  ``UPDATE … WHERE token = …``: the row lock of the statement makes exactly one of two
  racing writers win, across threads, processes and hosts;
- ``list(prefix)`` is in byte order of the keys' UTF-8 (the key column is ``COLLATE "C"``
  in a UTF8 database), the order S3 lists in.

Not for key material: a deleted or overwritten row lives on in dead tuples until vacuum,
in freed page space after it, in the WAL and in its archives and replicas, none of which
the application can wipe. Erasure must leave shredded keys unrecoverable, so
``archiver.store.state_route`` keeps every prefix erasure destroys on the object/SQLite
state store; this store only ever sees the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from archiver.store.errors import PreconditionFailed, StoreError, StoreUnavailable
from archiver.store.port import StateValue

_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
DEFAULT_TABLE = "archiver_state"


def _schema(table: str) -> list[sql.Composed]:
    t = sql.Identifier(table)
    seq = sql.Identifier(f"{table}_token")
    return [
        sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(seq),
        sql.SQL(
            'CREATE TABLE IF NOT EXISTS {} (key text COLLATE "C" PRIMARY KEY, '
            "value bytea NOT NULL, token bigint NOT NULL DEFAULT nextval({}))"
        ).format(t, sql.Literal(f"{table}_token")),
    ]


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching exactly the keys that start with ``prefix``."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PgStateStore:
    """``StateStore`` on PostgreSQL. Raises StoreError subclasses only."""

    name = "postgres"

    def __init__(
        self, dsn: str, *, table: str = DEFAULT_TABLE, connect_timeout_s: int = 10
    ) -> None:
        if not _TABLE_RE.match(table):
            raise ValueError(f"state table name {table!r} is not a plain lower-case name")
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._table = sql.Identifier(table)
        self._local = threading.local()
        t = self._table
        self._q_get = sql.SQL("SELECT value, token FROM {} WHERE key = %s").format(t)
        self._q_create = sql.SQL(
            "INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING "
            "RETURNING token"
        ).format(t)
        self._q_swap = sql.SQL(
            "UPDATE {} SET value = %s, token = DEFAULT WHERE key = %s AND token = %s "
            "RETURNING token"
        ).format(t)
        self._q_upsert = sql.SQL(
            "INSERT INTO {} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value, token = excluded.token RETURNING token"
        ).format(t)
        self._q_delete = sql.SQL("DELETE FROM {} WHERE key = %s").format(t)
        self._q_delete_if = sql.SQL(
            "DELETE FROM {} WHERE key = %s AND token = %s RETURNING 1"
        ).format(t)
        self._q_list = sql.SQL(
            "SELECT key FROM {} WHERE key LIKE %s ESCAPE '\\' ORDER BY key"
        ).format(t)
        self._q_list_all = sql.SQL("SELECT key FROM {} ORDER BY key").format(t)
        with self._errors("open state store"):
            conn = self._conn()
            # Two processes opening at once: CREATE … IF NOT EXISTS can still collide on
            # the catalog; an advisory lock serialises the schema setup.
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
                for statement in _schema(table):
                    conn.execute(statement)

    def _conn(self) -> psycopg.Connection[tuple[object, ...]]:
        conn: psycopg.Connection[tuple[object, ...]] | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or self._local.pid != os.getpid()):
            conn = None  # broken, or inherited through fork: the parent owns that socket
        if conn is None:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=self._timeout,
                application_name="wa-archiver",
            )  # fmt: skip
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except psycopg.OperationalError as exc:
            # Server down, connection lost, timeouts: drop the connection; the next call
            # opens a new one (callers retry StoreUnavailable).
            self.close()
            raise StoreUnavailable(f"{what}: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"{what}: {exc}") from exc

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            with contextlib.suppress(psycopg.Error):  # already broken
                conn.close()

    def ping(self) -> None:
        with self._errors("ping"):
            self._conn().execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(self._table))

    def get(self, key: str) -> StateValue | None:
        with self._errors(f"get {key}"):
            row = self._conn().execute(self._q_get, (key,)).fetchone()
        if row is None:
            return None
        value, token = row
        assert isinstance(value, bytes)
        return StateValue(value=value, token=str(token))

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
        with self._errors(f"put {key}"):
            conn = self._conn()
            if if_absent:
                row = conn.execute(self._q_create, (key, value)).fetchone()
                if row is None:
                    raise PreconditionFailed(f"{key}: already exists")
            elif if_match is not None:
                if not if_match.isdigit():
                    raise PreconditionFailed(f"{key}: token does not match")
                row = conn.execute(self._q_swap, (value, key, int(if_match))).fetchone()
                if row is None:
                    raise PreconditionFailed(f"{key}: token does not match")
            else:
                row = conn.execute(self._q_upsert, (key, value)).fetchone()
        if row is None:
            raise StoreError(f"put {key}: the server returned no token")
        return str(row[0])

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete ``key`` (absent is fine unless ``if_match`` is given)."""
        with self._errors(f"delete {key}"):
            conn = self._conn()
            if if_match is None:
                conn.execute(self._q_delete, (key,))
                return
            row = None
            if if_match.isdigit():
                row = conn.execute(self._q_delete_if, (key, int(if_match))).fetchone()
            if row is None:
                raise PreconditionFailed(f"{key}: token does not match")

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, in byte order of their UTF-8 (``COLLATE "C"``)."""
        with self._errors(f"list {prefix!r}"):
            conn = self._conn()
            if prefix:
                rows = conn.execute(self._q_list, (_like_prefix(prefix),)).fetchall()
            else:
                rows = conn.execute(self._q_list_all).fetchall()
        for (key,) in rows:
            yield str(key)
