"""The test PostgreSQL of ``scripts/services`` (``ARCHIVER_TEST_PG_DSN``).

A test that needs it and cannot reach it fails, under CI or not: the Postgres state store
is only as good as the tests that really ran against it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


def pg_dsn() -> str:
    dsn = os.environ.get("ARCHIVER_TEST_PG_DSN", "")
    if not dsn:
        pytest.fail('PostgreSQL not configured (ARCHIVER_TEST_PG_DSN); run: '
                    'scripts/services start pg; eval "$(scripts/services env)"')
    return dsn


def schema_dsn() -> str:
    """A DSN whose tables land in a fresh schema of their own (``search_path``), so tests
    sharing the server never see each other's state."""
    base = pg_dsn()
    schema = f"s_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return make_conninfo(base, options=f"-c search_path={schema}")


def rows(dsn: str, table: str = "archiver_state") -> dict[str, bytes]:
    """Every live row of the state table behind ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = sql.SQL("SELECT key, value FROM {}").format(sql.Identifier(table))
        return {str(k): bytes(v) for k, v in conn.execute(query)}


def cluster_files(dsn: str) -> Iterator[tuple[Path, bytes]]:
    """Every file of the test cluster (heap pages, WAL, ...) after a CHECKPOINT, so that
    what the server holds in memory is on disk too. Needs the services folder (the test
    runs beside the server, as root or as the server's user)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    services = Path(os.environ.get("ARCHIVER_SERVICES_DIR", ""))
    run_dir = services / "pg" / "run_dir"
    if not run_dir.is_file():
        pytest.fail(f"no {run_dir}: the test PostgreSQL is not scripts/services' own")
    data = Path(run_dir.read_text().strip()) / "data"
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.parent.name == "pg_wal" for p in files), "the WAL was not found"
    for path in files:
        try:
            yield path, path.read_bytes()
        except OSError:
            continue  # a file removed by the server meanwhile (a recycled WAL segment)
