"""A record whose policy period has already ended when it is written (a history message
older than a ``message_time`` period) is written with a short lock, not refused: S3 Object
Lock refuses a retain-until date in the past, and the processor's PUT failed, so the whole
raw batch (every delivery captured with it, each answered 200) was retried and never
processed. The record's header keeps the policy's own date; disposition takes it soon."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.retention.common import iter_records
from archiver.store.port import MIN_LOCK
from tests.support.apps import backend_settings, running_app
from tests.support.retention import SHORT_DEFAULT, Msg, now, post_processed

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", ["embedded", "servers"])]


def test_a_record_past_its_period_at_write_is_archived_with_its_batch(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "default.yaml").write_text(SHORT_DEFAULT)
    settings = backend_settings(
        request, tmp_path / "data", backend, inline_workers=False, policy_dir=folder
    )
    with running_app(settings) as (client, rt):
        before = datetime.now(UTC)
        # One delivery: a message of sixty days ago and one of next week. Processed: every
        # batch done (post_processed asserts it).
        post_processed(
            client,
            rt,
            [
                Msg("447700900601", "sixty days old", now() - 60 * 86400),
                Msg("447700900602", "kept a week", now() + 7 * 86400),
            ],
        )
        records = sorted((r for r in iter_records(rt.objects)
                          if r.header.get("kind") == "message"),
                         key=lambda r: str(r.header["occurred_at"]))  # fmt: skip
        assert len(records) == 2
        old, new = records
        old_policy = datetime.fromisoformat(old.header["policy"]["retain_until"])
        assert old_policy < before  # the policy's end, kept as it is
        lock = rt.objects.stat(old.key, old.version_id).retention
        assert lock is not None and lock.retain_until >= before + MIN_LOCK
        new_lock = rt.objects.stat(new.key, new.version_id).retention
        assert new_lock is not None
        assert new_lock.retain_until == datetime.fromisoformat(new.header["policy"]["retain_until"])
