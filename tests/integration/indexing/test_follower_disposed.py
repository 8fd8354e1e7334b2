"""A record disposed before the index follower reached it is not indexed, and a document
written for a record the log later says is disposed goes when the follower reaches that
``disposed`` leaf: the index follows the log, not the processor's cache of what it wrote
(``archiver.indexing.recent``) nor a read that raced the disposal.

On both backends (local folder + SQLite, and real MinIO + Elasticsearch); records kept
until their own message time (``SHORT_DEFAULT``), so a message of yesterday is disposable
at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.indexing.follower import IndexFollower
from archiver.ledger.entry import EntryKind
from archiver.retention.common import iter_records
from archiver.runtime import Runtime
from archiver.store.port import MIN_LOCK
from search.port import SearchRequest
from tests.support.apps import backend_settings, running_app, sign
from tests.support.retention import SHORT_DEFAULT, Msg, body_for, log_entries, now, post_processed

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", ["embedded", "servers"])]

A, B = "447700900511", "447700900512"


@contextmanager
def _app(request: Any, tmp_path: Path, backend: str) -> Iterator[tuple[TestClient, Runtime]]:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "default.yaml").write_text(SHORT_DEFAULT)
    settings = backend_settings(
        request, tmp_path / "data", backend, inline_workers=False, policy_dir=folder
    )
    with running_app(settings) as pair:
        yield pair


def _dispose(rt: Runtime, backend: str) -> None:
    """Run disposition once the records' short lock (``MIN_LOCK``: their period had ended
    when they were written) has passed: the local store's clock moves; MinIO's is waited."""
    if backend == "embedded":
        later = datetime.now(UTC) + MIN_LOCK + timedelta(seconds=1)
        rt.objects._now = lambda: later  # type: ignore[attr-defined]  # the local store's clock
        rt.retention.disposition.clock = lambda: later
    else:
        time.sleep(MIN_LOCK.total_seconds() + 1)
    rt.retention.disposition.run()


def _texts(follower: IndexFollower, word: str) -> list[str]:
    hits = follower.index.search(SearchRequest(q=word, size=20)).hits
    return sorted(str(h.doc.get("text")) for h in hits)


def test_a_record_disposed_while_cached_is_not_indexed(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with _app(request, tmp_path, backend) as (client, rt):
        # Processed (the processor leaves its records in this runtime's recent cache),
        # not indexed yet: the index is behind.
        post_processed(
            client,
            rt,
            [
                Msg(A, "quokka expired yesterday", now() - 86400),
                Msg(B, "quokka kept next year", now() + 365 * 86400),
            ],
        )
        assert len(rt.recent) >= 2
        messages = sorted(
            (r for r in iter_records(rt.objects) if r.header.get("kind") == "message"),
            key=lambda r: str(r.header["occurred_at"]),
        )
        assert len(messages) == 2
        expired = messages[0]
        _dispose(rt, backend)
        disposed = [e.key for e in log_entries(rt) if e.kind is EntryKind.DISPOSED]
        assert expired.key in disposed and messages[1].key not in disposed
        rt.follower.run_to_end()
        assert rt.follower.lag() == 0
        assert rt.index.get(expired.record_id) is None
        assert _texts(rt.follower, "quokka") == ["quokka kept next year"]


def test_a_document_written_back_after_its_disposal_goes_at_the_disposed_leaf(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """The follower read the record (cache or store) before disposition deleted it and
    its document, and upserted it after: the ``disposed`` leaf, in a later range, takes
    it out again. A record delivered again after the disposal (a new version under the
    same id) keeps its document."""
    with _app(request, tmp_path, backend) as (client, rt):
        post_processed(client, rt, [Msg(A, "wombat expired yesterday", now() - 86400)])
        record = next(r for r in iter_records(rt.objects) if r.header.get("kind") == "message")
        rt.follower.run_to_end()  # indexed ...
        doc = rt.index.get(record.record_id)
        assert doc is not None and doc["text"] == "wombat expired yesterday"
        _dispose(rt, backend)  # ... disposed: the object and the document go
        assert rt.index.get(record.record_id) is None
        # ... and the racing upsert puts the document back (what a read before the delete,
        # or the recent cache, leads to).
        rt.index.upsert([doc])
        assert rt.index.get(record.record_id) is not None
        rt.follower.run_to_end()  # reaches the disposed leaf
        assert rt.index.get(record.record_id) is None
        assert _texts(rt.follower, "wombat") == []


def test_the_document_of_a_newer_version_stays(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    with _app(request, tmp_path, backend) as (client, rt):
        body = body_for([Msg(A, "wallaby delivered twice", now() - 86400)])
        headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
        assert client.post("/webhooks/whatsapp", content=body, headers=headers).status_code == 200
        rt.processor.sweep()
        first = next(r for r in iter_records(rt.objects) if r.header.get("kind") == "message")
        _dispose(rt, backend)
        # Meta delivers it again: the same record id, written anew (a new version).
        assert client.post("/webhooks/whatsapp", content=body, headers=headers).status_code == 200
        rt.processor.sweep()
        again = [r for r in iter_records(rt.objects) if r.header.get("kind") == "message"]
        assert [(r.record_id, r.version_id != first.version_id) for r in again] == [
            (first.record_id, True)
        ]
        rt.follower.run_to_end()  # the old version's disposed leaf, then the new record
        doc = rt.index.get(first.record_id)
        assert doc is not None and doc["text"] == "wallaby delivered twice"
