"""Deduplication of records (raw deliveries are always kept): same event re-delivered
with other bytes, statuses per message/status/participant, echo + history of one
message, and the same wamid with different content (a flagged conflict)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.keyspace import RECORDS_PREFIX, raw_key
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.conftest import shared_dir
from tests.support.apps import backend_settings, running_app, sign


@pytest.fixture(params=["embedded", "servers"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = backend_settings(request, tmp_path, request.param, inline_workers=False)
    with running_app(settings) as pair:
        yield pair


def fixture(name: str) -> Any:
    return json.loads((shared_dir() / "fixtures" / "whatsapp" / name).read_text())


def post(client: TestClient, runtime: Runtime, body: bytes) -> list[Record]:
    response = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    assert response.status_code == 200, response.text
    outcome = runtime.processor.process(raw_key(response.json()["batch"]))
    return [read(runtime, key) for key in outcome.record_keys]


def read(runtime: Runtime, key: str) -> Record:
    version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
    return Record.parse(runtime.objects.get(key, version.version_id))


def primaries(runtime: Runtime) -> list[Record]:
    out = []
    for key in runtime.objects.list_keys(RECORDS_PREFIX):
        record = read(runtime, key)
        if record.header["kind"] not in ("source", "consent"):
            out.append(record)
    return out


def test_redelivery_with_other_bytes_is_one_record_and_a_source_link(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    payload = fixture("messages_text.json")
    compact = json.dumps(payload, separators=(",", ":")).encode()
    pretty = json.dumps(payload, indent=4, ensure_ascii=True).encode()
    first = post(client, runtime, compact)
    second = post(client, runtime, pretty)
    assert [r.header["kind"] for r in first] == ["message"]
    assert [r.header["kind"] for r in second] == ["source"]
    assert second[0].header["link_of"] == first[0].record_id
    assert len(primaries(runtime)) == 1
    # Both raw deliveries are kept, as evidence of what Meta sent and when.
    assert len(list(runtime.objects.list_keys("raw/"))) == 2


def test_rebatched_delivery_yields_the_same_records(app: tuple[TestClient, Runtime]) -> None:
    client, runtime = app
    a, b = fixture("messages_text.json"), fixture("statuses_delivered.json")
    post(client, runtime, json.dumps(a).encode())
    post(client, runtime, json.dumps(b).encode())
    # Meta batches several changes into one POST on a retry.
    merged = {"object": a["object"], "entry": a["entry"] + b["entry"]}
    again = post(client, runtime, json.dumps(merged).encode())
    assert sorted(r.header["kind"] for r in again) == ["source", "source"]
    assert len(primaries(runtime)) == 2


def test_status_transitions_are_keyed_by_message_status_and_participant(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    sent = post(client, runtime, json.dumps(fixture("statuses_sent.json")).encode())
    delivered = post(client, runtime, json.dumps(fixture("statuses_delivered.json")).encode())
    group = post(
        client, runtime, json.dumps(fixture("alt_pywa/statuses_group__pywa.json")).encode()
    )
    kinds = [r.header["kind"] for r in sent + delivered + group]
    assert all(k == "status" for k in kinds)
    ids = [r.record_id for r in sent + delivered + group]
    assert len(set(ids)) == len(ids)
    statuses = {r.header["status"] for r in sent + delivered}
    assert statuses == {"sent", "delivered"}


def test_echo_then_history_is_one_record_naming_both_sources(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    echo = fixture("smb_message_echoes.json")
    message = echo["entry"][0]["changes"][0]["value"]["message_echoes"][0]
    history = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": echo["entry"][0]["id"],
                "changes": [
                    {
                        "field": "history",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": echo["entry"][0]["changes"][0]["value"]["metadata"],
                            "history": [
                                {
                                    "metadata": {"phase": 0, "chunk_order": 1, "progress": 100},
                                    "threads": [
                                        {
                                            "id": message["to"],
                                            "messages": [
                                                {
                                                    **{
                                                        k: v
                                                        for k, v in message.items()
                                                        if k != "to"
                                                    },
                                                    "to": message["to"],
                                                    "history_context": {"status": "READ"},
                                                }
                                            ],
                                        }
                                    ],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    first = post(client, runtime, json.dumps(echo).encode())
    second = post(client, runtime, json.dumps(history).encode())
    assert [r.header["kind"] for r in first] == ["echo"]
    links = [r for r in second if r.header["kind"] == "source"]
    assert len(links) == 1
    assert links[0].header["link_of"] == first[0].record_id
    assert links[0].header["origin"] == "history"
    assert first[0].header["origin"] == "business_app"


def test_same_wamid_with_different_content_is_a_flagged_conflict(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    original = fixture("messages_text.json")
    changed = json.loads(json.dumps(original))
    changed["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "Something else"
    first = post(client, runtime, json.dumps(original).encode())
    second = post(client, runtime, json.dumps(changed).encode())
    assert len(second) == 1
    conflict = second[0]
    assert "conflict" in conflict.header["flags"]
    assert conflict.header["conflict_with"] == first[0].record_id
    assert conflict.record_id != first[0].record_id
    texts = {
        r.open(runtime.keys.get(r.key_id).secret)["event"]["texts"][0] for r in (first[0], conflict)
    }
    assert texts == {"Does it come in another color?", "Something else"}


def test_a_post_of_a_thousand_updates_is_captured_and_recorded(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    template = fixture("messages_text.json")
    value = template["entry"][0]["changes"][0]["value"]
    base = value["messages"][0]
    value["messages"] = [
        {**base, "id": f"wamid.BULK{i:05d}", "text": {"body": f"message {i}"}} for i in range(1000)
    ]
    records = post(client, runtime, json.dumps(template).encode())
    assert len([r for r in records if r.header["kind"] == "message"]) == 1000
