"""A large batch (a history sync) reaches the log a chunk at a time: its first records
have leaves while the rest are still being written, and a crash between two chunks
appends nothing twice on the retry (``archiver.ingest.processor._Early``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import archiver.ingest.processor as processor_module
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.retention.common import iter_records
from archiver.runtime import Runtime
from tests.conftest import shared_dir
from tests.support.apps import sign
from tests.support.retention import app_on

pytestmark = pytest.mark.integration

MESSAGES = 10
CHUNK = 3


class Crash(Exception):
    pass


def _history(messages: int) -> bytes:
    """One ``history`` delivery of ``messages`` text messages, each its own wamid."""
    body = json.loads((shared_dir() / "fixtures" / "whatsapp" / "history.json").read_text())
    value = body["entry"][0]["changes"][0]["value"]
    value["history"][0]["threads"] = [{"id": "16505551234", "messages": [
        {"from": "16505551234" if n % 2 else "15550783881", "id": f"wamid.CHUNK{n:04d}",
         "timestamp": str(1739230955 + n), "type": "text",
         "text": {"body": f"history chunk message {n}"}, "history_context": {"status": "READ"}}
        for n in range(messages)
    ]}]  # fmt: skip
    return json.dumps(body).encode()


def _capture(client: object, body: bytes) -> None:
    answer = client.post("/webhooks/whatsapp", content=body, headers={  # type: ignore[attr-defined]
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 200


def _named(rt: Runtime) -> Counter[tuple[str, str]]:
    return Counter(
        (e.key, e.version_id)
        for e in map(parse_entry, rt.log.entries(0, rt.log.size()))
        if e.kind in (EntryKind.RECORD, EntryKind.RAW)
    )


def test_a_large_batch_is_logged_while_its_last_records_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor_module, "APPEND_EVERY", CHUNK)
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        _capture(client, _history(MESSAGES))
        before = rt.log.size()
        sizes: list[int] = []
        rt.processor._crash = lambda point: (
            sizes.append(rt.log.size()) if point == "after_record_put" else None)  # fmt: skip
        outcomes = rt.processor.sweep()
        assert [o.status for o in outcomes] == ["done"]
        # Every message, and the delivery's own record of the sync's progress.
        assert outcomes[0].records >= MESSAGES
        assert len(sizes) == outcomes[0].records
        # The raw batch and the first chunk were leaves before the last chunk's records
        # were written: at least 1 + CHUNK leaves, and more after every further chunk.
        assert sizes[-1] >= before + 1 + CHUNK * (MESSAGES // CHUNK - 1)
        named = _named(rt)
        records = list(iter_records(rt.objects))
        assert len(records) == outcomes[0].records
        assert all(named[(r.key, r.version_id)] == 1 for r in records)
        assert all(count == 1 for count in named.values())


def test_a_crash_between_chunks_appends_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor_module, "APPEND_EVERY", CHUNK)
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        _capture(client, _history(MESSAGES))
        before = rt.log.size()

        def die(point: str) -> None:
            # Dies writing a record of the third chunk: two chunks are in the log.
            if point == "after_record_put" and rt.log.size() >= before + 1 + 2 * CHUNK:
                raise Crash(point)

        rt.processor._crash = die
        with pytest.raises(Crash):
            rt.processor.sweep()
        logged = rt.log.size()
        assert logged >= before + 1 + 2 * CHUNK  # the chunks really went in first

        rt.processor._crash = lambda _point: None
        outcomes = rt.processor.sweep()
        assert [o.status for o in outcomes] == ["done"]
        named = _named(rt)
        records = list(iter_records(rt.objects))
        assert len(records) > MESSAGES  # the messages and the sync's progress record
        assert len({r.key for r in records}) == len(records)  # no record written twice
        assert outcomes[0].records + outcomes[0].reused == len(records)
        assert all(named[(r.key, r.version_id)] == 1 for r in records)
        assert all(count == 1 for count in named.values())  # raw batch included
        assert sum(1 for key, _v in named if key.startswith("raw/")) == 1
