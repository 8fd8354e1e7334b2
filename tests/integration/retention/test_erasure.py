"""Crypto-shredding erasure against real MinIO and Elasticsearch (and the SQLite index):
after erasing a GDPR-only contact, a marker from their messages can be recovered from
nothing — no object version (every version's bytes, and everything still decryptable),
no index, no working state — and the log still verifies. A FINRA-covered or held contact
is refused with the reason."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from archiver.auth import Role
from archiver.ingest.rawbatch import RawBatchError, parse_batch
from archiver.keys.errors import KeyShredded
from archiver.keyspace import CAPTURE_KEYS_PREFIX
from archiver.ledger.entry import EntryKind
from archiver.ledger.verify import verify_archive
from archiver.records.model import Record
from archiver.retention.common import resolve_subject
from archiver.runtime import Runtime
from tests.integration.retention.support import (
    DISPLAY,
    PHONE_NUMBER_ID,
    Msg,
    app_on,
    deliver,
    log_entries,
    now,
    s3_overrides,
    token,
)
from tests.support.apps import sign

pytestmark = pytest.mark.integration

ERASE = "447700900011"
KEEP = "447700900012"


def _recoverable(rt: Runtime, needle: str) -> list[str]:
    """Where ``needle`` can still be read: any object version's bytes, any record content
    still decryptable, any raw delivery slot whose capture key is still in working state,
    any working-state value."""
    found: list[str] = []
    for v in rt.objects.list_versions(""):
        if v.is_delete_marker:
            continue
        data = rt.objects.get(v.key, v.version_id)
        if needle.encode() in data:
            found.append(f"bytes of {v.key}")
        if v.key.startswith("records/"):
            record = Record.parse(data)
            try:
                content = record.open(rt.keys.get(record.key_id).secret)
            except KeyShredded:
                continue
            if needle in json.dumps(content, ensure_ascii=False):
                found.append(f"content of {v.key}")
        elif v.key.startswith("raw/"):
            try:
                opened = parse_batch(data)
            except RawBatchError:
                continue
            keys = rt.state.get(CAPTURE_KEYS_PREFIX + opened.batch_id)
            wrapped = json.loads(keys.value)["keys"] if keys else {}
            for slot in opened.slots:
                blob = wrapped.get(str(slot.index))
                if blob is None:
                    continue
                body = opened.open(slot.index, rt.kek.unwrap(base64.b64decode(blob)))
                if needle.encode() in body:
                    found.append(f"raw slot {slot.index} of {v.key}")
    for key in rt.state.list(""):
        value = rt.state.get(key)
        if value is not None and needle.encode() in value.value:
            found.append(f"state {key}")
    return found


def _es_hits(es_url: str, alias: str, needle: str) -> int:
    es = Elasticsearch(es_url)
    es.indices.refresh(index=f"{alias}*")
    resp = es.search(index=f"{alias}*", query={"query_string": {"query": needle}})
    return int(resp["hits"]["total"]["value"])


def _expunged(es_url: str, alias: str, rt: Runtime, within_s: float) -> bool:
    es = Elasticsearch(es_url)
    deadline = time.monotonic() + within_s
    while True:
        rt.index.force_merge_expunge()  # type: ignore[attr-defined]  # ElasticIndex has it
        stats = es.indices.stats(index=f"{alias}*", metric="docs")
        if stats["_all"]["primaries"]["docs"]["deleted"] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(5)


def _deliver_three(client: Any, rt: Runtime, marker: str) -> None:
    t = now()
    deliver(client, rt, [Msg(ERASE, f"first {marker}", t), Msg(KEEP, "shared delivery", t)])
    deliver(client, rt, [Msg(ERASE, f"second {marker}", t)])
    deliver(client, rt, [Msg(KEEP, "keep only", t)])


def _readable_keep_contents(rt: Runtime) -> list[str]:
    subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, KEEP)
    texts = []
    for v in rt.objects.list_versions("records/"):
        record = Record.parse(rt.objects.get(v.key, v.version_id))
        if record.header.get("subject") == subject:
            texts.append(json.dumps(record.open(rt.keys.get(record.key_id).secret)))
    return texts


def test_erasure_leaves_the_marker_nowhere_with_elasticsearch(
    tmp_path: Path, s3_endpoint: Any, es_url: str
) -> None:
    marker = "zqxmark" + secrets.token_hex(5)
    alias = f"ret-{secrets.token_hex(4)}"
    overrides = s3_overrides(s3_endpoint, policies="gdpr", index="elasticsearch",
                             es_url=es_url, es_alias=alias)
    with app_on(tmp_path, **overrides) as (client, rt):
        _deliver_three(client, rt, marker)
        before = _recoverable(rt, marker)
        assert any(w.startswith("content of") for w in before)
        assert any(w.startswith("raw slot") for w in before)
        assert _es_hits(es_url, alias, marker) == 2
        keep_before = _readable_keep_contents(rt)
        assert len(keep_before) == 2

        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["records"] == 2 and out["capture_slots_shredded"] == 2
        assert client.post("/v1/erasure", headers=token(rt, Role.LEGAL), json={
            "phone_number_id": PHONE_NUMBER_ID, "contact": ERASE}).status_code == 403

        assert _recoverable(rt, marker) == []
        assert _es_hits(es_url, alias, marker) == 0
        # Soft-deleted documents stay in the shard (retention lease) until the lease syncs
        # (~30 s on one node); a later expunge then drops them from the segment files.
        assert _expunged(es_url, alias, rt, within_s=90)
        # The other subject's records, even from the shared delivery, stay readable.
        assert _readable_keep_contents(rt) == keep_before

        entries = log_entries(rt)
        kinds = [e.kind for e in entries]
        assert EntryKind.TOMBSTONE in kinds
        shredded = [e for e in entries if e.kind is EntryKind.KEY_SHREDDED]
        assert {e.fields.get("kind_of_key") for e in shredded} == {"subject", "capture_slot"}
        rt.audit.flush()  # an audit batch being written has its object before its leaves
        findings = verify_archive(rt.log, rt.objects, []).findings
        assert [f for f in findings if not f.kind.startswith("checkpoint")] == []
        assert "erasure:requested" in [e["event"] for e in rt.audit.events()]


def test_erasure_with_the_sqlite_index_leaves_no_bytes_in_the_db_file(
    tmp_path: Path, s3_endpoint: Any
) -> None:
    marker = "zqxmark" + secrets.token_hex(5)
    with app_on(tmp_path, **s3_overrides(s3_endpoint, policies="gdpr")) as (client, rt):
        _deliver_three(client, rt, marker)
        db = tmp_path / "data" / "index.sqlite3"

        def db_bytes() -> bytes:
            return b"".join(p.read_bytes() for p in db.parent.glob("index.sqlite3*"))

        assert marker.encode() in db_bytes()
        r = client.post("/v1/erasure", headers=token(rt, Role.ADMIN),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 200, r.text
        assert marker.encode() not in db_bytes()
        assert _recoverable(rt, marker) == []


def test_erasure_of_a_finra_covered_contact_is_refused(tmp_path: Path, s3_endpoint: Any) -> None:
    marker = "zqxmark" + secrets.token_hex(5)
    overrides = s3_overrides(s3_endpoint, policies="finra_4511", lock_mode="COMPLIANCE")
    with app_on(tmp_path, **overrides) as (client, rt):
        deliver(client, rt, [Msg(ERASE, f"kept {marker}", now())])
        r = client.post("/v1/erasure", headers=token(rt, Role.ADMIN),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "erasure_refused"
        assert "finra_4511" in error["message"] and "17(3)(b)" in error["message"]
        assert any(w.startswith("content of") for w in _recoverable(rt, marker))
        info = next(rt.objects.list_versions("records/"))
        assert rt.objects.stat(info.key, info.version_id).retention.mode.value == "COMPLIANCE"


def _echo_to(client: Any, rt: Runtime, wa_id: str, text: str) -> None:
    """The business's own words typed in the Business App, mirrored as an echo (Meta's
    ``smb_message_echoes`` shape), sent to ``wa_id``."""
    echo = {"from": DISPLAY, "to": wa_id, "id": "wamid.E" + secrets.token_hex(12),
            "timestamp": str(now()), "type": "text", "text": {"body": text}}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
             "message_echoes": [echo]}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398",
         "changes": [{"value": value, "field": "smb_message_echoes"}]}]}).encode()
    r = client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert all(o.status in ("done", "skipped") for o in rt.processor.sweep())
    rt.follower.catch_up()


def test_erasure_of_a_customer_who_only_got_business_echoes_is_refused_under_finra(
    tmp_path: Path,
) -> None:
    """Issue 15 #1: the business's own words (Business App echoes) are what FINRA 4511
    keeps; with gdpr also on, erasing the echo's customer must be refused, not shredded."""
    marker = "zqxmark" + secrets.token_hex(5)
    with app_on(tmp_path, policies="finra_4511,gdpr", inline_workers=False) as (client, rt):
        _echo_to(client, rt, ERASE, f"our offer {marker}")
        r = client.post("/v1/erasure", headers=token(rt, Role.ADMIN),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "erasure_refused"
        assert "finra_4511" in r.json()["error"]["message"]
        assert any(w.startswith("content of") for w in _recoverable(rt, marker))


def test_erasure_of_a_held_contact_is_refused(tmp_path: Path, s3_endpoint: Any) -> None:
    marker = "zqxmark" + secrets.token_hex(5)
    with app_on(tmp_path, **s3_overrides(s3_endpoint, policies="gdpr")) as (client, rt):
        deliver(client, rt, [Msg(ERASE, f"held {marker}", now())])
        auth = token(rt, Role.ADMIN)
        hold = client.post("/v1/holds", headers=auth, json={
            "contact": ERASE, "phone_number_id": PHONE_NUMBER_ID, "case_id": "c-1"}).json()
        r = client.post("/v1/erasure", headers=auth,
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 409
        assert hold["id"] in r.json()["error"]["message"]
        assert any(w.startswith("content of") for w in _recoverable(rt, marker))
        client.delete(f"/v1/holds/{hold['id']}", headers=auth)
        r = client.post("/v1/erasure", headers=auth,
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})
        assert r.status_code == 200, r.text
        assert _recoverable(rt, marker) == []
