"""``ARCHIVER_STATE=postgres`` on the real servers: the pipeline (capture → process → index)
on MinIO + Elasticsearch with its working state in PostgreSQL, the routing of shreddable
prefixes to the state bucket, and a shred that leaves nothing readable in the database's
files (heap pages and WAL). Issue 10, "move coordination state to a store made for it"."""

from __future__ import annotations

import base64
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.keyspace import (
    CAPTURE_KEYS_PREFIX,
    DATA_KEYS_PREFIX,
    PROC_PREFIX,
    SHREDDABLE_STATE,
)
from archiver.retention.erasure import DERIVED_STATE
from archiver.store.state_pg import PgStateStore
from archiver.store.state_route import RoutedStateStore
from archiver.store.state_sqlite import SqliteStateStore
from tests.support import erasure as er
from tests.support.pg import cluster_files, rows, schema_dsn

pytestmark = pytest.mark.integration


def test_every_derived_copy_is_routed_off_postgres() -> None:
    """What erasure destroys (DERIVED_STATE) is exactly what must not reach a database."""
    for prefix in DERIVED_STATE:
        assert prefix.startswith(SHREDDABLE_STATE), prefix


def test_routed_list_merges_both_stores_in_byte_order(tmp_path: Path) -> None:
    dsn = schema_dsn()
    pg, lite = PgStateStore(dsn), SqliteStateStore(tmp_path / "s.sqlite3")
    routed = RoutedStateStore(pg, lite, SHREDDABLE_STATE)
    keys = ["index/names/g/s1", "index/cursor/live", "index/folds/g/t", "index/active",
            "keys/dk/k1", "keys/epoch", "jobs-active/export/j", "jobs/export/j", "capkeys/b",
            "proc/b", "indexX"]  # fmt: skip
    for key in keys:
        routed.put(key, key.encode())
    assert set(rows(dsn)) == {k for k in keys if not k.startswith(SHREDDABLE_STATE)}
    assert set(lite.list("")) == {k for k in keys if k.startswith(SHREDDABLE_STATE)}
    assert list(routed.list("")) == sorted(keys, key=str.encode)
    assert list(routed.list("index/")) == sorted(k for k in keys if k.startswith("index/"))
    assert list(routed.list("index/n")) == ["index/names/g/s1"]
    assert list(routed.list("jobs")) == ["jobs-active/export/j", "jobs/export/j"]
    assert list(routed.list("keys/")) == ["keys/dk/k1", "keys/epoch"]
    got = routed.get("keys/dk/k1")
    assert got is not None and got.value == b"keys/dk/k1"
    routed.delete("keys/dk/k1", if_match=got.token)
    assert routed.get("keys/dk/k1") is None and lite.get("keys/dk/k1") is None
    pg.close()
    lite.close()


def _cas_worker(dsn: str, rounds: int, out: Any) -> None:
    store = PgStateStore(dsn)
    wins = 0
    for _ in range(rounds):
        while True:
            cur = store.get("ctr")
            assert cur is not None
            try:
                store.put("ctr", str(int(cur.value) + 1).encode(), if_match=cur.token)
                wins += 1
                break
            except Exception as exc:  # PreconditionFailed: lost the race, read again
                assert type(exc).__name__ == "PreconditionFailed", exc
    out.put(wins)


def test_compare_and_swap_holds_across_processes() -> None:
    """Three processes increment one counter by CAS: no increment is lost."""
    dsn = schema_dsn()
    PgStateStore(dsn).put("ctr", b"0")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_cas_worker, args=(dsn, 40, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sum(out.get(timeout=5) for _ in procs) == 120
    got = PgStateStore(dsn).get("ctr")
    assert got is not None and got.value == b"120"


def test_a_deleted_key_never_gets_an_old_token_back() -> None:
    store = PgStateStore(schema_dsn())
    t1 = store.put("k", b"same")
    store.delete("k")
    t2 = store.put("k", b"same")
    assert t2 != t1  # S3 would answer the same ETag; SQLite and Postgres never reuse
    with pytest.raises(Exception, match="token does not match"):
        store.put("k", b"x", if_match=t1)


def _now() -> str:
    return str(int(time.time()))  # records must outlive now: their retention locks


@pytest.fixture
def pg_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    dsn = schema_dsn()
    with er.archive(request, tmp_path, "servers", state="postgres", state_dsn=dsn) as pair:
        yield pair, dsn


def test_pipeline_on_minio_and_elasticsearch_with_postgres_state(pg_archive: Any) -> None:
    (client, rt), dsn = pg_archive
    assert rt.state.name == "postgres+s3"
    assert client.get("/readyz").status_code == 200
    texts = [f"pg-pipeline-{i} zanzibar" for i in range(3)]
    for i, text in enumerate(texts):
        er.post(client, rt, er.envelope({
            "contacts": [{"profile": {"name": "Pat"}, "wa_id": er.ERASE}],
            "messages": [{"from": er.ERASE, "id": f"wamid.PG{i}", "timestamp": _now(),
                          "type": "text", "text": {"body": text}}],
        }))  # fmt: skip
    for text in texts:
        assert er.index_holds(rt, text), text
    stored = rows(dsn)
    # Coordination state is in Postgres ...
    assert any(k.startswith(PROC_PREFIX) for k in stored)
    assert any(k.startswith("index/cursor/") for k in stored)
    # ... key material and derived copies are not, and are in the state bucket.
    assert not [k for k in stored if k.startswith(SHREDDABLE_STATE)]
    assert list(rt.state.list(DATA_KEYS_PREFIX)) and list(rt.state.list(CAPTURE_KEYS_PREFIX))


def test_a_shredded_key_is_nowhere_in_the_postgres_files(pg_archive: Any) -> None:
    """After an erasure, neither the subject's wrapped data keys nor the wrapped capture
    keys of its raw slots can be read from the database cluster: not in a live row, a dead
    tuple or a WAL record. Control: a value the pipeline stored in Postgres is found by
    the same scan, so the scan sees what the server wrote."""
    (client, rt), dsn = pg_archive
    er.post(client, rt, er.envelope({
        "contacts": [{"profile": {"name": "Quinn"}, "wa_id": er.ERASE}],
        "messages": [{"from": er.ERASE, "id": "wamid.PGSHRED", "timestamp": _now(),
                      "type": "text", "text": {"body": "shred me quokka"}}],
    }))  # fmt: skip
    secrets: list[bytes] = []
    for key in rt.state.list(DATA_KEYS_PREFIX):
        got = rt.state.get(key)
        assert got is not None
        secrets.append(json.loads(got.value)["wrapped"].encode())
    for key in rt.state.list(CAPTURE_KEYS_PREFIX):
        got = rt.state.get(key)
        assert got is not None
        secrets += [blob.encode() for blob in json.loads(got.value)["keys"].values()]
    assert secrets
    assert all(len(base64.b64decode(s)) >= 32 for s in secrets)
    control = next(v for k, v in rows(dsn).items() if k.startswith(PROC_PREFIX))

    result = er.erase(client, rt)
    assert result["keys_shredded"] and result["capture_slots_shredded"], result
    assert er.recoverable(rt, "quokka") == []

    control_seen = False
    for path, data in cluster_files(dsn):
        control_seen = control_seen or control in data
        for secret in secrets:
            assert secret not in data, f"a wrapped key is readable in {path}"
    assert control_seen, "the scan did not find a value Postgres holds: it proves nothing"
