"""A worker that dies right after a batch's log append: the retry finishes what came after
it — legal holds on the new records and their media jobs — and appends nothing twice."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from archiver.auth import Role
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.retention.common import iter_records
from tests.support.apps import sign
from tests.support.meta_app import image_webhook, jobs
from tests.support.retention import app_on, token

pytestmark = pytest.mark.integration

WA_ID = "16505551234"


class Crash(Exception):
    pass


def test_retry_after_the_append_holds_the_records_and_queues_their_media(
    tmp_path: Path, shared: Path
) -> None:
    body = image_webhook(shared, media_id="7001", data=b"\xff\xd8 jpeg",
                         wamid="wamid.RETRY-AFTER-APPEND", wa_id=WA_ID)  # fmt: skip
    phone_number_id = json.loads(body)["entry"][0]["changes"][0]["value"]["metadata"][
        "phone_number_id"
    ]
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        placed = client.post("/v1/holds", headers=token(rt, Role.LEGAL), json={
            "case_id": "case-retry", "contact": WA_ID, "phone_number_id": phone_number_id,
        })  # fmt: skip
        assert placed.status_code == 201, placed.text
        answer = client.post("/webhooks/whatsapp", content=body, headers={
            "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 200

        def die(point: str) -> None:
            if point == "after_append":
                raise Crash(point)

        rt.processor._crash = die
        with pytest.raises(Crash):
            rt.processor.sweep()
        assert jobs(rt) == {}  # the first attempt died before queueing the media job

        rt.processor._crash = lambda _point: None
        outcomes = rt.processor.sweep()
        assert [o.status for o in outcomes] == ["done"]

        assert [j["media_id"] for j in jobs(rt).values()] == ["7001"]
        records = [r for r in iter_records(rt.objects) if r.header.get("kind") == "message"]
        assert records and all(rt.objects.stat(r.key, r.version_id).legal_hold for r in records)
        named = Counter(
            (e.key, e.version_id)
            for e in map(parse_entry, rt.log.entries(0, rt.log.size()))
            if e.kind in (EntryKind.RECORD, EntryKind.RAW)
        )
        assert named and all(count == 1 for count in named.values())  # nothing appended twice
