"""Helpers for the retention tests: webhook bodies with chosen contacts, texts and times,
an app on real MinIO (+ Elasticsearch or the SQLite index), tokens, and a log reader."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.ledger.entry import Entry, parse_entry
from archiver.runtime import Runtime
from tests.support.apps import embedded_settings, running_app, sign

PHONE_NUMBER_ID = "106540352242922"
DISPLAY = "15550783881"

SHORT_DEFAULT = """\
# Test only: records are kept until their own message time (P0D from message_time), so a
# test chooses each record's retain-until through the message timestamp.
id: default
title: "Test default: keep until the message time"
kind: default
citations:
  - source: "test"
    section: "tests/integration/retention"
    summary: "short retention for disposition tests"
retention:
  period: P0D
  clock_starts: message_time
lock_mode: GOVERNANCE
disposition:
  action: delete
  two_person_approval: false
erasure: allowed
"""


@dataclass(frozen=True)
class Msg:
    wa_id: str
    text: str
    ts: int  # epoch seconds (Meta's "timestamp")
    name: str = "Test Person"


def body_for(messages: Sequence[Msg]) -> bytes:
    """One Cloud API ``messages`` delivery carrying ``messages`` (several contacts allowed)."""
    contacts = {m.wa_id: {"profile": {"name": m.name}, "wa_id": m.wa_id} for m in messages}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
        "contacts": list(contacts.values()),
        "messages": [
            {"from": m.wa_id, "id": "wamid.T" + secrets.token_hex(12), "timestamp": str(m.ts),
             "type": "text", "text": {"body": m.text}}
            for m in messages
        ],
    }
    envelope = {"object": "whatsapp_business_account",
                "entry": [{"id": "102290129340398",
                           "changes": [{"value": value, "field": "messages"}]}]}
    return json.dumps(envelope).encode()


def post_processed(client: TestClient, runtime: Runtime, messages: Sequence[Msg]) -> None:
    """A webhook, processed and every batch done, not indexed (the caller drives the
    follower)."""
    body = body_for(messages)
    r = client.post("/webhooks/whatsapp", content=body,
                    headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    outcomes = runtime.processor.sweep()
    assert outcomes and all(o.status == "done" for o in outcomes), outcomes


def deliver(client: TestClient, runtime: Runtime, messages: Sequence[Msg]) -> None:
    body = body_for(messages)
    r = client.post("/webhooks/whatsapp", content=body,
                    headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    outcomes = runtime.processor.sweep()
    assert outcomes and all(o.status in ("done", "skipped") for o in outcomes), outcomes
    runtime.follower.catch_up()


def token(runtime: Runtime, role: Role) -> dict[str, str]:
    plain, _ = runtime.tokens.create(role=role, name=f"test-{role.value}-{secrets.token_hex(2)}")
    return {"Authorization": f"Bearer {plain}"}


def log_entries(runtime: Runtime) -> list[Entry]:
    size = runtime.log.size()
    return [parse_entry(d) for d in runtime.log.entries(0, size)]


def s3_overrides(s3: Any, **extra: Any) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    endpoint = s3["endpoint"] if isinstance(s3, dict) else s3.endpoint
    access = s3["access_key"] if isinstance(s3, dict) else s3.access_key
    secret = s3["secret_key"] if isinstance(s3, dict) else s3.secret_key
    values: dict[str, Any] = {
        "store": "s3", "s3_endpoint": endpoint, "s3_access_key": access, "s3_secret_key": secret,
        "evidence_bucket": f"ret-ev-{tag}", "state_bucket": f"ret-st-{tag}",
        "inline_workers": False, "log_retention_days": 1,
        # Longer than any record here, so the processor never extends a raw batch's lock
        # (its retention_extended entry is refused by the ledger's phone guard today).
        "raw_retention_days": 2200,
    }
    values.update(extra)
    return values


@contextmanager
def app_on(tmp: Path, **overrides: Any) -> Iterator[tuple[TestClient, Runtime]]:
    with running_app(embedded_settings(tmp / "data", **overrides)) as pair:
        yield pair


def now() -> int:
    return int(time.time())
