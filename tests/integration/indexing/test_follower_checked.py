"""The index follower reads records through the same check as the views
(``archiver.indexing.logged.logged_record``): stored bytes that are not the ones the log
entry names are never indexed, and the follower goes on with the rest of the log.

Embedded backend (local folder + SQLite): the test alters an object's bytes on disk, which
a real object store's retention lock would refuse."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from archiver.indexing.follower import IndexFollower
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.retention.common import iter_records
from search.port import SearchRequest
from search.sqlite import SqliteIndex
from tests.support.apps import backend_settings, running_app
from tests.support.retention import Msg, post_processed

pytestmark = pytest.mark.integration

A, B = "447700900401", "447700900402"
TS = 1750000000


def test_an_altered_record_is_skipped_loudly_not_indexed(tmp_path: Path) -> None:
    settings = backend_settings(None, tmp_path / "data", "embedded", inline_workers=False)
    with running_app(settings) as (client, rt):
        post_processed(client, rt, [Msg(A, "narwhal ledger inbound", TS)])
        post_processed(client, rt, [Msg(B, "narwhal ledger second", TS + 1)])
        entries = [parse_entry(d) for d in rt.log.entries(0, rt.log.size())]
        records = {r.key: r for r in iter_records(rt.objects) if r.header.get("kind") == "message"}
        logged = [e for e in entries if e.kind is EntryKind.RECORD and e.key in records]
        assert len(logged) == 2
        altered, kept = logged
        assert altered.key is not None and altered.version_id is not None
        # Still a well-formed record, only its clear header says something else.
        path = rt.settings.data_dir / "evidence" / "objects" / altered.key / "@v"
        path = path / f"{altered.version_id}.data"
        path.chmod(0o644)
        data = path.read_bytes()
        assert b'"inbound"' in data
        path.write_bytes(data.replace(b'"inbound"', b'"outbound"'))

        # Another process's follower (no cache of the processor's bytes): reads the store.
        index = SqliteIndex(tmp_path / f"checked-{secrets.token_hex(3)}.sqlite3")
        index.ensure_index()
        follower = IndexFollower(log_reader=rt.log, objects=rt.objects, state=rt.state,
                                 keys=rt.keys, index=index, pseudo=rt.pseudo,
                                 generation="checked")  # fmt: skip
        with capture_logs() as logs:
            follower.run_to_end()
        assert follower.lag() == 0  # not a dead end: the rest of the log is indexed
        assert index.get(records[altered.key].record_id) is None
        assert index.get(records[str(kept.key)].record_id) is not None
        hits = index.search(SearchRequest(q="narwhal", size=10)).hits
        assert [h.id for h in hits] == [records[str(kept.key)].record_id]
        loud = [e for e in logs if e.get("event") == "index_record_altered"]
        assert [(e["object_key"], e["version_id"]) for e in loud] == [
            (altered.key, altered.version_id)
        ], logs
