"""A report over some numbers holds nothing of the others: it is read by tokens scoped to
those numbers. Seeded: every record is ``PN``'s; a hold placed on ``PN`` and an erasure
procedure of a ``PN`` customer. A report over ``SILENT`` (no records) must show no hold,
no erasure, no raw capture and no raw batch's lock; one over ``PN`` shows them; one over
every number too."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.auth import Role
from archiver.keyspace import ERASURES_PREFIX, record_key
from archiver.ledger.entry import EntryKind, make_entry
from archiver.reporting.gather import ReportRequest
from archiver.retention.attachments import AttachmentView
from reports.compute import compute_report
from reports.facts import Regulation
from reports.twin import twin_bytes
from tests.fakes.meta import FakeMeta
from tests.integration.reporting.support import PN, SILENT, seeded_archive
from tests.support.apps import backend_settings, running_app
from tests.support.disposition import records_at
from tests.support.disposition_media import (
    JPEG,
    PNID,
    TOKEN,
    image_body,
    media_worker,
    pass_expiry,
    post,
    soon,
    write_policy,
)
from tests.support.retention import SHORT_DEFAULT, Msg, body_for, now, token

pytestmark = pytest.mark.integration
SUBJECT = "s_" + "a" * 32


def test_scoped_report_shows_no_other_numbers_holds_erasures_or_captures(
        request: Any, tmp_path: Path) -> None:
    with seeded_archive(request, tmp_path, "embedded") as s:
        rt = s.runtime
        r = s.client.post("/v1/holds", json={"query": "Hello", "phone_number_id": PN,
                                             "reason": "case 7"}, headers=s.admin)
        assert r.status_code == 201, r.text
        when = (s.start + (s.end - s.start) / 2).isoformat()
        rt.state.put(f"{ERASURES_PREFIX}{SUBJECT}/e1", json.dumps({
            "v": 1, "id": "e1", "status": "done", "subject": SUBJECT,
            "phone_number_id": PN, "when": when, "finished_at": when}).encode())

        def gather(*numbers: str) -> Any:
            return rt.reports.gatherer.gather(
                ReportRequest(Regulation.GDPR, s.start, s.end, numbers))

        silent, mine, every = gather(SILENT), gather(PN), gather()
        def erased(facts: Any) -> list[str]:  # the seeded procedure (the refusal of C aside)
            return [e.request_id for e in facts.erasures if e.subject == SUBJECT]

        assert every.raw_captures > 0 and len(every.holds) == 1 and erased(every) == ["e1"]
        assert mine.raw_captures == every.raw_captures  # every capture gave a PN record
        assert len(mine.holds) == 1 and erased(mine) == ["e1"]
        assert silent.records == ()
        assert silent.raw_captures == 0, silent.raw_captures

        def raw_locks(facts: Any) -> int:  # raw batches whose lock the report reads
            return sum(c.population for c in facts.object_lock_checks if c.kind == "raw")

        assert raw_locks(every) > 0 and raw_locks(mine) == raw_locks(every)
        assert raw_locks(silent) == 0, silent.object_lock_checks
        assert silent.holds == (), silent.holds
        assert silent.erasures == (), silent.erasures


OTHER = "106540352288888"  # a second business number with activity of its own


def _as(number: str, body: bytes) -> bytes:
    """A delivery to ``number`` instead of the fixtures' business number."""
    assert PNID.encode() in body
    return body.replace(PNID.encode(), number.encode())


@pytest.mark.parametrize("backend", ["embedded", "servers"])
def test_scoped_report_holds_no_other_numbers_disposals_media_or_verify_findings(
        request: Any, tmp_path: Path, backend: str, shared: Path) -> None:
    """Both numbers have an image (blob kept; its message under a hold whose legal hold
    was lifted behind the log's back: a verify finding) and a text that is disposed. A
    report over ``PN`` names none of ``OTHER``'s disposals, blobs or verify findings, labels
    the audit-object lock check archive-wide, and counts an older disposal leaf (no
    number) as unknown instead of listing it."""
    settings = backend_settings(request, tmp_path, backend, inline_workers=False,
                                raw_retention_days=2200,
                                policy_dir=write_policy(tmp_path, SHORT_DEFAULT))
    start = datetime.now(UTC) - timedelta(hours=1)
    with FakeMeta(token=TOKEN) as fake, httpx.Client(timeout=10) as http, \
            running_app(settings) as (client, rt):
        worker = media_worker(rt, fake, http)
        far = now() + 30 * 86400
        images: dict[str, Any] = {}
        for number, wa_id in ((PN, "447700900401"), (OTHER, "447700900402")):
            media_id = str(secrets.randbelow(10**15) + 10**15)
            data = JPEG + secrets.token_bytes(8)
            fake.add_media(media_id, data, "image/jpeg")
            post(client, rt, _as(number, image_body(shared, wa_id=wa_id, media_id=media_id,
                                                    data=data, ts=far)))
            assert worker.run_once().stored == 1
            rt.follower.catch_up()
            (msg,) = [r for r in records_at(rt, far)
                      if r.header["business"]["phone_number_id"] == number]
            (blob,) = [a.blob for a in AttachmentView(
                log=rt.log, objects=rt.objects, state=rt.state).of_messages(
                    [msg.header["record_id"]]) if a.blob]  # fmt: skip
            images[number] = (msg, blob)
        until = soon("minio" if backend == "servers" else "embedded")
        for number, wa_id in ((PN, "447700900403"), (OTHER, "447700900404")):
            post(client, rt, _as(number, body_for([Msg(wa_id, "goes", until)])))
        texts = {r.header["business"]["phone_number_id"]: str(r.header["record_id"])
                 for r in records_at(rt, until)}
        assert set(texts) == {PN, OTHER}
        legal = token(rt, Role.LEGAL)
        for number, wa_id in ((PN, "447700900401"), (OTHER, "447700900402")):
            # A logged hold whose legal hold is then lifted behind the log's back: the
            # verify sweep names that number's message record (hold mismatch).
            r = client.post("/v1/holds", headers=legal,
                            json={"contact": wa_id, "phone_number_id": number})
            assert r.status_code == 201, r.text
            msg = images[number][0]
            rt.objects.set_legal_hold(msg.key, msg.version_id, False)
        job = pass_expiry(rt, "minio" if backend == "servers" else "embedded", until)
        gone = {d.key for d in job.run().disposed}
        assert {record_key(t) for t in texts.values()} <= gone
        rt.proofs.verify(None, rt.audit)
        rt.audit.flush()
        # A disposal leaf as earlier versions wrote it: no business number.
        old = "r_" + "q" * 32
        rt.log.append([make_entry(
            EntryKind.DISPOSED, time=datetime.now(UTC), key=record_key(old),
            version_id="v1", size=10, object_kind="record", reason="retention_expired",
            policy="default").data])  # fmt: skip

        def gather(*numbers: str) -> Any:
            return rt.reports.gatherer.gather(ReportRequest(
                Regulation.GDPR, start, start + timedelta(days=4), numbers))

        every, mine = gather(), gather(PN)
        disposed = {d.record_id for d in every.disposals}
        assert {texts[PN], texts[OTHER], old} <= disposed
        assert {d.record_id for d in mine.disposals} == {texts[PN]}, mine.disposals
        assert mine.disposals_number_unknown == 1 and every.disposals_number_unknown == 0

        def blobs(facts: Any) -> set[str]:
            (check,) = [c for c in facts.object_lock_checks if c.kind == "media"]
            return {o.object_key for o in check.observations}

        assert blobs(every) == {images[PN][1][0], images[OTHER][1][0]}
        assert blobs(mine) == {images[PN][1][0]}

        def verified(facts: Any) -> set[str]:
            return {f.object_key for f in facts.integrity.verify.findings}

        assert {images[PN][0].key, images[OTHER][0].key} <= verified(every)
        assert verified(mine) == {images[PN][0].key}, verified(mine)
        assert mine.integrity.verify.unattributed >= 1

        # Nothing of OTHER's anywhere in the scoped report's facts or twin.
        theirs = (texts[OTHER], record_key(texts[OTHER]), images[OTHER][0].key,
                  str(images[OTHER][0].header["record_id"]), images[OTHER][1][0], OTHER)
        stored = json.dumps(mine.to_dict())
        twin = twin_bytes(compute_report(mine)).decode()
        for ident in theirs:
            assert ident not in stored and ident not in twin, ident
        # What stays archive-wide says so: the audit objects' lock check, in the twin too.
        audit = {c.kind: c.archive_wide for c in mine.object_lock_checks}
        assert audit == {"raw": False, "media": False, "audit": True}
        assert not any(c.archive_wide for c in every.object_lock_checks)
        rows = json.loads(twin)["retention"]["by_kind"]
        assert {r["kind"]: r["coverage"] for r in rows}["audit"] == "archive"
        assert json.loads(twin)["disposals"]["number_unknown"] == 1
