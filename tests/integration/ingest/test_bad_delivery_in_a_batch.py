"""Issue 15 #8: one bad delivery must not stall its group-commit batch.

Each test captures one batch of several good deliveries plus one bad one (through the
real capture writer), processes it once, and checks: the batch is ``done``; every good
delivery's records are written, logged (one ``record`` leaf each) and indexed; the bad
delivery is kept byte for byte in the raw capture and flagged — either repaired and
flagged (a large integer kept exactly, a lone surrogate replaced), or kept as an
``unprocessable`` record naming the batch, the delivery and the reason; ``verify``
finds nothing. On both stores: the embedded one and real MinIO + Elasticsearch.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from archiver.ingest.rawbatch import Delivery, parse_batch
from archiver.keyspace import PROC_PREFIX
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.ledger.verify import verify_archive
from archiver.metrics import REGISTRY
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.conftest import shared_dir

FIXTURES = shared_dir() / "fixtures" / "whatsapp"
GOOD = ["messages_text.json", "smb_message_echoes.json", "statuses_delivered.json"]


def _fixture(name: str, tag: str) -> dict[str, Any]:
    text = (FIXTURES / name).read_text().replace("wamid.", f"wamid.{tag}")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _big_template_id() -> bytes:
    doc = _fixture("message_template_status_update.json", "big")
    doc["entry"][0]["changes"][0]["value"]["message_template_id"] = 2**64 + 7
    return json.dumps(doc).encode()


def _lone_surrogate() -> bytes:
    doc = _fixture("messages_text.json", "sur")
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "hi \ud800 there"
    return json.dumps(doc).encode()  # ensure_ascii: the body carries the escape \ud800


def _deep() -> bytes:
    inner = b'{"a":' * 600 + b"1" + b"}" * 600
    return (b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":'
            b'"messages","value":{"messages":[{"id":"wamid.deep","type":"text","text":'
            b'{"body":' + inner + b"}}]}}]}]}")


def _not_a_number() -> bytes:
    """Not a trigger of the issue: a value canonical JSON cannot hold (NaN), caught by the
    safety net at record-writing time rather than at parse time."""
    doc = _fixture("messages_text.json", "nan")
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = float("nan")
    return json.dumps(doc).encode()


TRIGGERS = {
    "large_integer": (_big_template_id, "large_integer"),
    "lone_surrogate": (_lone_surrogate, "replaced_surrogates"),
    "deep_nesting": (_deep, "unprocessable"),
    "nan_safety_net": (_not_a_number, "unprocessable"),
}


def _records(rt: Runtime, keys: list[str]) -> list[Record]:
    out = []
    for key in keys:
        version = next(v for v in rt.objects.list_versions(key) if v.key == key)
        out.append(Record.parse(rt.objects.get(key, version.version_id)))
    return out


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_one_bad_delivery_does_not_stall_the_batch(runtime: Runtime, trigger: str) -> None:
    rt = runtime
    make, flag = TRIGGERS[trigger]
    bad = make()
    good = [json.dumps(_fixture(name, f"G{i}")).encode() for i, name in enumerate(GOOD)]
    bodies = [good[0], good[1], bad, good[2]]
    now = datetime.now(UTC).isoformat()
    batch = rt.capture_writer.write(
        [Delivery(b, now, "sha256=x", 0, "application/json") for b in bodies])
    before = _unprocessable_total()

    outcome = rt.processor.process(batch.key, batch.version_id)

    assert outcome.status == "done"
    proc = rt.state.get(PROC_PREFIX + batch.batch_id)
    assert proc is not None and json.loads(proc.value)["status"] == "done"
    records = _records(rt, outcome.record_keys)
    by_slot: dict[int, list[Record]] = {}
    for r in records:
        by_slot.setdefault(int(r.header["raw"]["slot"]), []).append(r)
    assert sorted(by_slot) == [0, 1, 2, 3], by_slot.keys()

    # The bad delivery: flagged, and its bytes are in the raw capture exactly as sent.
    flagged = by_slot[2]
    assert all(flag in r.header["flags"] for r in flagged), [r.header for r in flagged]
    if flag == "unprocessable":
        (record,) = flagged
        assert record.header["kind"] == "unprocessable"
        info = record.header["unprocessable"]
        assert (info["batch_id"], info["delivery"]) == (batch.batch_id, 2)
        assert info["reason"] in ("too_deep", "not_canonical")
        assert outcome.unprocessable == 1
        after = _unprocessable_total()
        assert after == before + 1  # the alert metric moved
    else:
        assert all(r.header["kind"] != "unprocessable" for r in flagged)
    opened = parse_batch(rt.objects.get(batch.key, batch.version_id))
    keys_doc = rt.state.get("capkeys/" + batch.batch_id)
    assert keys_doc is not None
    wrapped = json.loads(keys_doc.value)
    key = rt.kek.unwrap(base64.b64decode(wrapped["keys"]["2"]))
    assert opened.open(2, key) == bad

    # Every record (good ones and the flag) is logged once, and indexed where it should be.
    size = rt.log.size()
    leaves = [parse_entry(e) for e in rt.log.entries(0, size)]
    logged = {(e.key, e.version_id) for e in leaves if e.kind is EntryKind.RECORD}
    for r in records:
        version = next(v for v in rt.objects.list_versions(r.key) if v.key == r.key)
        assert (r.key, version.version_id) in logged, r.header["kind"]
    assert any(e.kind is EntryKind.RAW and e.key == batch.key for e in leaves)
    rt.follower.catch_up()
    for slot in (0, 1):  # a customer message and a business echo: searchable documents
        message = next(r for r in by_slot[slot] if r.header["kind"] in ("message", "echo"))
        assert rt.index.get(message.record_id) is not None, slot
    assert rt.follower.lag() == 0
    if flag == "unprocessable":  # an officer finds the flagged delivery by kind and reason
        doc = rt.index.get(record.record_id)
        assert doc is not None and doc["type"] == "unprocessable"
        assert doc["event"] == info["reason"]

    # And verify finds no unlogged version, not even a fresh one (no grace).
    result = verify_archive(rt.log, rt.objects, [], grace=0)
    assert not result.findings, result.findings


def test_large_integer_is_kept_exactly(runtime: Runtime) -> None:
    rt = runtime
    now = datetime.now(UTC).isoformat()
    batch = rt.capture_writer.write([Delivery(_big_template_id(), now, "sha256=x", 0, None)])
    outcome = rt.processor.process(batch.key, batch.version_id)
    (record,) = _records(rt, outcome.record_keys)
    owner = record.header["business"]["phone_number_id"] or record.header["business"]["waba_id"]
    assert owner
    key = rt.keys.get(record.key_id)
    event = record.open(key.secret)["event"]
    assert event["raw"]["message_template_id"] == {"$bigint": str(2**64 + 7)}


def _unprocessable_total() -> float:
    return sum(s.value for m in REGISTRY.collect()
               if m.name == "archiver_unprocessable_deliveries"
               for s in m.samples if s.name.endswith("_total"))
