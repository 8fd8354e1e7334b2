"""The processor's working-state round trips per batch (issue 10), on both state stores.

A fresh batch is claimed with one create (no read of its state first), its ``size_before``
is the log size the process last saw committed (no read of the log's state), and a
subject the process already resolved costs no merge-pointer read unless a merge happened
since (``subjects/epoch``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.keyspace import MERGED_PREFIX, PROC_PREFIX, raw_key
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.runtime import Runtime
from tests.conftest import shared_dir
from tests.support.apps import backend_settings, running_app, sign


@pytest.fixture(params=["embedded", pytest.param("servers", marks=pytest.mark.integration)])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = backend_settings(request, tmp_path, request.param, inline_workers=False)
    with running_app(settings) as pair:
        yield pair


def _text(wamid: str, wa_id: str = "16505551234") -> bytes:
    body = json.loads((shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_text())
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["wa_id"] = wa_id
    value["messages"][0].update({"id": wamid, "from": wa_id})
    return json.dumps(body).encode()


def _capture(client: TestClient, body: bytes) -> str:
    answer = client.post("/webhooks/whatsapp", content=body,
                         headers={"X-Hub-Signature-256": sign(body)})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["batch"])


def _counted(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    """``(method, key)`` of every call of the runtime's real state store."""
    calls: Counter[tuple[str, str]] = Counter()
    inner = rt.state.inner  # type: ignore[attr-defined]  # MeteredState's store
    get, put = inner.get, inner.put

    def counted_get(key: str) -> Any:
        calls[("get", key)] += 1
        return get(key)

    def counted_put(key: str, value: bytes, **kw: Any) -> str:
        calls[("put", key)] += 1
        return put(key, value, **kw)

    monkeypatch.setattr(inner, "get", counted_get)
    monkeypatch.setattr(inner, "put", counted_put)
    return calls


def test_a_fresh_batch_of_a_known_subject_reads_no_state_it_can_do_without(
    app: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rt = app
    first = _capture(client, _text("wamid.ROUNDTRIP1"))
    assert rt.processor.process(raw_key(first)).status == "done"
    second = _capture(client, _text("wamid.ROUNDTRIP2"))
    calls = _counted(rt, monkeypatch)
    outcome = rt.processor.process(raw_key(second))
    assert outcome.status == "done" and outcome.records == 1
    assert calls[("get", PROC_PREFIX + second)] == 0, calls  # claimed by one create
    assert calls[("put", PROC_PREFIX + second)] == 3, calls  # claim, logging, done
    assert calls[("get", rt.log.state_key)] == 0, calls  # size_before: the remembered size
    assert not [k for m, k in calls if m == "get" and k.startswith(MERGED_PREFIX)], calls
    # And still exactly once: one leaf for the batch and one for its record.
    kinds = Counter(parse_entry(e).kind for e in rt.log.entries(0, rt.log.size()))
    assert kinds[EntryKind.RAW] == 2 and kinds[EntryKind.RECORD] == 2, kinds


def test_a_batch_claimed_elsewhere_is_still_skipped(app: tuple[TestClient, Runtime]) -> None:
    client, rt = app
    batch = _capture(client, _text("wamid.ROUNDTRIP3"))
    assert rt.processor.process(raw_key(batch)).status == "done"
    assert rt.processor.process(raw_key(batch)).status == "skipped"  # done: create refused
    other = _capture(client, _text("wamid.ROUNDTRIP4"))
    live = {"status": "claimed", "owner": "another", "until": 4_102_444_800}
    rt.state.put(PROC_PREFIX + other, json.dumps(live).encode(), if_absent=True)
    assert rt.processor.process(raw_key(other)).status == "skipped"
