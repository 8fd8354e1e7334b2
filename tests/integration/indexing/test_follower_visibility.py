"""The index follower (issue 10): the indexing loop's writes do not wait for a refresh,
yet whoever reads right after indexing still sees them; a key destroyed while a batch
is being indexed never leaves that batch's text in the index; kept absences of
per-subject state (merge pointers, names) never hide a merge or a rename.

Real MinIO + Elasticsearch where refresh behaviour is the point; the embedded backend
(local folder + SQLite) where it is not.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.indexing.follower import IndexFollower
from archiver.retention.common import iter_records, resolve_subject
from archiver.runtime import Runtime
from search.elastic import ElasticIndex
from search.port import Document, SearchRequest
from search.sqlite import SqliteIndex
from tests.support.apps import backend_settings, running_app
from tests.support.retention import PHONE_NUMBER_ID, Msg, post_processed, token

pytestmark = pytest.mark.integration

A, B = "447700900301", "447700900302"
TS = 1750000000


def _found(rt: Runtime, q: str) -> int:
    return rt.index.search(SearchRequest(q=q, size=50)).total


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Runtime]]:
    settings = backend_settings(request, tmp_path / "data", "servers", inline_workers=False)
    with running_app(settings) as (client, rt):
        assert isinstance(rt.index, ElasticIndex)
        # No scheduled refresh at all: only an explicit one makes a write searchable, so
        # what a test finds says who refreshed, not how fast the node happened to be.
        rt.index.client.indices.put_settings(
            index=rt.index.alias, settings={"index": {"refresh_interval": "-1"}}
        )
        yield client, rt


def test_loop_writes_wait_for_no_refresh_and_catch_up_still_reads_its_writes(
    servers: tuple[Any, Runtime],
) -> None:
    client, rt = servers
    post_processed(client, rt, [Msg(A, "quetzal harbour invoice", TS)])
    first = rt.log.size()
    post_processed(client, rt, [Msg(B, "quetzal harbour receipt", TS + 1)])
    # The loop's path, while behind (a batch short of the log's end): written (a real-time
    # get finds it), not refreshed. With ``wait_for`` and refreshes off, this bulk would
    # block until the client times out.
    assert rt.follower.catch_up(first, visible=False) == first
    assert rt.follower.lag() > 0
    assert _found(rt, "quetzal") == 0
    ids = [r.record_id for r in iter_records(rt.objects)]
    assert any(rt.index.get(i) is not None for i in ids)
    # The batch that catches up refreshes before its cursor moves: lag 0 means searchable.
    assert rt.follower.catch_up(visible=False) > 0
    assert rt.follower.lag() == 0
    assert _found(rt, "quetzal") == 2
    # The default path (tests, the CLI, ``run_to_end``): searchable when it returns, even
    # for a batch short of the end.
    post_processed(client, rt, [Msg(A, "quetzal harbour refund", TS + 2)])
    size = rt.log.size()
    post_processed(client, rt, [Msg(B, "quetzal harbour credit", TS + 3)])
    assert rt.follower.catch_up(size - rt.follower.cursor()) > 0
    assert rt.follower.lag() > 0
    assert _found(rt, "quetzal") == 3


def test_query_hold_catches_an_arrival_the_loop_indexed_without_refresh(
    servers: tuple[Any, Runtime],
) -> None:
    from archiver.auth import Role

    client, rt = servers
    r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                    json={"case_id": "case-vis", "query": "zanzibar"})  # fmt: skip
    assert r.status_code == 201, r.text
    post_processed(client, rt, [Msg(A, "zanzibar contract signed", TS)])
    post_processed(client, rt, [Msg(B, "lunch at noon", TS)])
    rt.follower.catch_up(visible=False)  # what the indexing loop calls
    subject_a = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, A)
    held = {
        r.subject: bool(rt.objects.stat(r.key, r.version_id).legal_hold)
        for r in iter_records(rt.objects) if r.header.get("kind") == "message"
    }  # fmt: skip
    assert held[subject_a] is True
    assert list(held.values()).count(True) == 1


class _ShredDuringUpsert(SqliteIndex):
    """The real SQLite index; its first bulk write first runs ``before`` (an erasure that
    lands while the follower's batch is between reading and writing)."""

    def __init__(self, path: Path, before: Any) -> None:
        super().__init__(path)
        self.before = before

    def upsert(self, docs: Iterable[Document], *, index: str | None = None) -> int:
        docs = list(docs)
        if self.before is not None:
            before, self.before = self.before, None
            before()
        return super().upsert(docs, index=index)


def test_a_key_destroyed_mid_batch_never_leaves_the_batch_text_indexed(tmp_path: Path) -> None:
    settings = backend_settings(None, tmp_path / "data", "embedded", inline_workers=False)
    with running_app(settings) as (client, rt):
        post_processed(client, rt, [Msg(A, "okapi secret plans", TS), Msg(B, "okapi lunch", TS)])
        subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, A)

        def erase() -> None:  # the shred, after the batch decrypted with the cached key
            rt.keys.shred(subject, guard=lambda _s: None)

        index = _ShredDuringUpsert(tmp_path / f"race-{secrets.token_hex(3)}.sqlite3", erase)
        index.ensure_index()
        follower = IndexFollower(log_reader=rt.log, objects=rt.objects, state=rt.state,
                                 keys=rt.keys, index=index, pseudo=rt.pseudo)  # fmt: skip
        follower.run_to_end()
        assert index.before is None  # the erasure did land mid-batch
        hits = index.search(SearchRequest(q="okapi", size=10)).hits
        # B's text stays searchable; A's document is there, without any of A's text.
        assert len(hits) == 1 and hits[0].doc.get("subject") != subject, hits
        mine = [r.record_id for r in iter_records(rt.objects) if r.subject == subject]
        docs = [index.get(i) for i in mine]
        assert docs and all(d is not None and "okapi" not in str(d) for d in docs), docs
