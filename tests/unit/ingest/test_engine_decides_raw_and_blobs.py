"""Issue 15 #1: raw captures and media blobs get their retention from the policy engine
(``raw_capture`` and ``media`` kinds), not from a fixed floor or a copy of the message's
answer alone. Embedded stores (local folder + SQLite): no server needed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.ingest.rawbatch import Delivery
from archiver.runtime import Runtime
from tests.conftest import shared_dir
from tests.support.apps import embedded_settings

LONG_ATTACHMENTS = """\
id: attachments_nine_years
title: "Test: attachments nine years"
kind: obligation
citations:
  - source: "test"
    section: "tests/unit/ingest"
    summary: "an obligation on attachments only"
    url: "https://example.org/test"
retention:
  period: P9Y
  clock_starts: capture_time
lock_mode: COMPLIANCE
disposition:
  action: review
erasure: refused
applies_to:
  - record_kind: [attachment]
"""


def _delivery(body: bytes) -> Delivery:
    now = datetime.now(UTC).isoformat()
    return Delivery(body, now, "sha256=x", 0, "application/json")


def test_raw_capture_retention_is_the_engines_answer(tmp_path: Path) -> None:
    """With FINRA 4511 on and a one-day floor, a raw batch is locked six years at once,
    before any record is parsed from it (a crash before processing loses nothing)."""
    settings = embedded_settings(tmp_path, policies="finra_4511", raw_retention_days=1,
                                 inline_workers=False)
    runtime = Runtime.open(settings)
    try:
        batch = runtime.capture_writer.write([_delivery(b'{"object": "x"}')])
        info = runtime.objects.stat(batch.key, batch.version_id)
        assert info.retention is not None
        assert info.retention.retain_until > datetime.now(UTC) + timedelta(days=6 * 365)
    finally:
        runtime.close()


def test_without_an_obligation_the_raw_floor_holds(tmp_path: Path) -> None:
    """No obligation on raw captures: the floor is their house period (not the default
    policy's, which is for records); the processor extends it to the records'."""
    settings = embedded_settings(tmp_path, raw_retention_days=30, inline_workers=False)
    runtime = Runtime.open(settings)
    try:
        batch = runtime.capture_writer.write([_delivery(b'{"object": "x"}')])
        info = runtime.objects.stat(batch.key, batch.version_id)
        assert info.retention is not None
        assert 29 <= (info.retention.retain_until - datetime.now(UTC)).days <= 30
    finally:
        runtime.close()


def test_media_blob_retention_is_the_engines_answer_for_attachments(tmp_path: Path) -> None:
    """A policy on ``attachment`` longer than the message's: the media job (which sets
    the blob's and the media link's retention) carries the engine's nine years."""
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "attachments.yaml").write_text(LONG_ATTACHMENTS)
    settings = embedded_settings(tmp_path / "data", policy_dir=policy_dir, inline_workers=False)
    runtime = Runtime.open(settings)
    try:
        body = (shared_dir() / "fixtures" / "whatsapp" / "messages_image.json").read_bytes()
        runtime.capture_writer.write([_delivery(body)])
        outcomes = runtime.processor.sweep()
        assert [o.status for o in outcomes] == ["done"]
        jobs = [json.loads(runtime.state.get(k).value)  # type: ignore[union-attr]
                for k in runtime.state.list("mediajobs/")]
        assert jobs, "the image message queued no media job"
        for job in jobs:
            until = datetime.fromisoformat(job["retain_until"])
            assert until > datetime.now(UTC) + timedelta(days=8 * 365), job
            assert job["lock_mode"] in ("COMPLIANCE", "GOVERNANCE")
    finally:
        runtime.close()
