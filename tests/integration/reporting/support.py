"""A seeded archive with known violations, on the embedded default or real MinIO + ES.

Seeded (business number ``PN``, a second watched number ``SILENT`` that never speaks):

* customer A opts out (``STOP``), then a marketing template is sent to A (an echo whose
  status carries ``pricing.category = marketing``) → ``consent.marketing_after_opt_out``;
* A's first message's object gets a lock one day shorter than its policy requires
  (GOVERNANCE bypass, as an attacker with that permission could) →
  ``retention.lock_shorter_than_policy``;
* customer B sends an image that is never fetched (no Graph token) →
  ``completeness.media_not_fetched``;
* ``SILENT`` has no record in the period → ``completeness.silent_number``;
* erasing customer C is refused (FINRA 4511 obligation) → ``erasure.refused``.

A verify sweep runs first, so "no verify sweep" is not a finding.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.jobs.durable import JobOwner, JobService
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.runtime import Runtime
from tests.support.apps import backend_settings, running_app, sign

PN = "106540352242922"
DISPLAY = "15550783881"
SILENT = "106540352299999"
A, B, C = "447700900101", "447700900102", "447700900103"
EXPECTED_CODES = {
    "consent.marketing_after_opt_out",
    "retention.lock_shorter_than_policy",
    "completeness.media_not_fetched",
    "completeness.silent_number",
    "erasure.refused",
}


def _post(client: TestClient, value: dict[str, Any], field: str = "messages") -> None:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PN}, **value}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398",
                                  "changes": [{"value": value, "field": field}]}]}).encode()
    r = client.post("/webhooks/whatsapp", content=body,
                    headers={"X-Hub-Signature-256": sign(body),
                             "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def _inbound(client: TestClient, wa_id: str, ts: int, message: dict[str, Any]) -> str:
    wamid = "wamid.R" + secrets.token_hex(10)
    _post(client, {"contacts": [{"profile": {"name": "Person"}, "wa_id": wa_id}],
                   "messages": [{"from": wa_id, "id": wamid, "timestamp": str(ts), **message}]})
    return wamid


@dataclass
class Seeded:
    client: TestClient
    runtime: Runtime
    jobs: JobService
    start: datetime
    end: datetime
    short_lock_record: str
    admin: dict[str, str]

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"regulation": "finra", "start": self.start.isoformat(),
                "end": self.end.isoformat(), "numbers": [PN, SILENT], **extra}

    def run_report(self, **extra: Any) -> dict[str, Any]:
        owner = JobOwner("test", "admin", None)
        job = self.jobs.submit("report", self.params(**extra), owner, numbers=[PN, SILENT])
        done = self.jobs.wait("report", job.id, timeout=300)
        assert done.state.value == "succeeded", (done.state, done.errors)
        return dict(done.result)


def shorten_lock(runtime: Runtime, key: str, version: str, until: datetime) -> None:
    """Set a shorter GOVERNANCE lock, bypassing governance (what the report must catch)."""
    if runtime.settings.store.value == "s3":
        client = runtime.objects._client  # type: ignore[attr-defined]
        xml = ("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>GOVERNANCE"
               f"</Mode><RetainUntilDate>{until.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"
               "</RetainUntilDate></Retention>").encode()
        md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()  # noqa: S324 - S3's header
        client._execute("PUT", runtime.settings.evidence_bucket, key, body=xml,
                        query_params={"retention": "", "versionId": version},
                        headers={"x-amz-bypass-governance-retention": "true",
                                 "Content-MD5": md5})
        return
    meta = runtime.settings.data_dir / "evidence" / "objects" / key / "@v" / f"{version}.json"
    meta.chmod(0o644)
    doc = json.loads(meta.read_text())
    doc["retention"]["retain_until"] = until.isoformat()
    meta.write_text(json.dumps(doc, sort_keys=True))


@contextmanager
def seeded_archive(request: Any, tmp: Path, backend: str) -> Iterator[Seeded]:
    settings = backend_settings(request, tmp, backend, inline_workers=False,
                                policies="finra_4511", report_silence_threshold_s=19_800)
    with running_app(settings) as (client, runtime):
        t0 = int(time.time()) - 3 * 3600
        _inbound(client, A, t0, {"type": "text", "text": {"body": "Hello"}})
        _inbound(client, A, t0 + 60, {"type": "text", "text": {"body": "STOP"}})
        template = "wamid.T" + secrets.token_hex(10)
        _post(client, {"message_echoes": [{
            "from": DISPLAY, "to": A, "id": template, "timestamp": str(t0 + 120),
            "type": "template", "template": {"name": "spring_sale", "language": {"code": "en"}},
        }]}, field="smb_message_echoes")
        _post(client, {"statuses": [{
            "id": template, "status": "delivered", "timestamp": str(t0 + 180), "recipient_id": A,
            "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing"},
        }]})
        _inbound(client, B, t0 + 200, {"type": "image", "image": {
            "id": "1234567890123", "mime_type": "image/jpeg",
            "sha256": base64.b64encode(hashlib.sha256(b"img").digest()).decode()}})
        _inbound(client, C, t0 + 300, {"type": "text", "text": {"body": "Keep me"}})
        for _ in range(3):
            runtime.processor.sweep()
            runtime.follower.catch_up()
        admin_plain, _ = runtime.tokens.create(role=Role.ADMIN, name="seed-admin")
        admin = {"Authorization": f"Bearer {admin_plain}"}
        r = client.post("/v1/erasure", json={"phone_number_id": PN, "contact": C},
                        headers=admin)
        assert r.status_code == 409, r.text
        runtime.audit.flush()
        runtime.proofs.verify(None, runtime.audit)  # clean, before the lock is tampered with
        runtime.audit.flush()
        # The first message's record object: lock one day short of what its policy requires.
        size = runtime.log.size()
        record = None
        for data in runtime.log.entries(0, size):
            e = parse_entry(data)
            if e.kind is EntryKind.RECORD and e.fields.get("event") == "message":
                record = e
                break
        assert record is not None and record.key and record.version_id
        required = datetime.fromisoformat(str(record.fields["retain_until"]))
        shorten_lock(runtime, record.key, record.version_id, required - timedelta(days=1))
        info = runtime.objects.stat(record.key, record.version_id)
        assert info.retention is not None and info.retention.retain_until < required
        jobs = runtime.job_service  # inline_workers=false: the test starts its runners
        jobs.start()
        try:
            # A six-hour period around the messages, and a 5.5-hour silence threshold: the
            # busy number's longest gap (the last message to the end) is under it, the
            # silent number's (the whole period) over it.
            start = datetime.fromtimestamp(t0 - 3600, UTC)
            yield Seeded(client, runtime, jobs, start, start + timedelta(hours=6),
                         str(record.fields["record_id"]), admin)
        finally:
            jobs.stop()
