"""Issue 15 §2–§4: an attachment (its ``media_link`` record and its blob) follows its
message through holds, ``retention apply`` and disposition, and disposition decides on the
retention end the current policy set computes. Embedded store and real MinIO; images are
fetched from FakeMeta by the real media worker (Meta's base64 ``sha256`` in the webhook)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from archiver.auth import Role
from archiver.retention.apply import apply_if_policies_changed
from tests.fakes.meta import FakeMeta
from tests.support.disposition_media import (
    PNID,
    REVIEW_TWO,
    TOKEN,
    archive_with,
    base_overrides,
    deliver_image,
    disposed_refs,
    longer_default,
    media_worker,
    pass_expiry,
    present,
    soon,
    write_policy,
)
from tests.support.retention import SHORT_DEFAULT, token

pytestmark = pytest.mark.integration

BACKENDS = ["embedded", "minio"]


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    with FakeMeta(token=TOKEN) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.mark.parametrize("backend", BACKENDS)
def test_contact_hold_keeps_the_image_blob_and_link_through_disposition(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path,
    fake: FakeMeta, http: httpx.Client,
) -> None:
    base = base_overrides(request, backend)
    with archive_with(tmp_path, base, write_policy(tmp_path, SHORT_DEFAULT)) as (client, rt):
        until = soon(backend)
        worker = media_worker(rt, fake, http)
        held = deliver_image(client, rt, worker, fake, shared, wa_id="447700900301", ts=until)
        free = deliver_image(client, rt, worker, fake, shared, wa_id="447700900302", ts=until)

        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": "447700900301", "phone_number_id": PNID})
        assert r.status_code == 201, r.text
        kinds = r.json()["held_by_kind"]
        assert kinds.get("media") == 1 and kinds.get("record") == 2, kinds  # message + link
        for ref in (held.message, held.link, held.blob):
            assert rt.objects.stat(*ref).legal_hold, ref

        report = pass_expiry(rt, backend, until).run()
        gone = {(d.key, d.version_id) for d in report.disposed}
        for ref in (held.message, held.link, held.blob):
            assert present(rt, ref) and ref not in gone and ref not in disposed_refs(rt)
        # The unheld customer's image goes, message first, its attachment with it.
        assert {free.message, free.link, free.blob} <= gone
        assert not any(present(rt, ref) for ref in (free.message, free.link, free.blob))


def test_an_image_fetched_after_the_hold_is_held_too(
    request: pytest.FixtureRequest, tmp_path: Path, shared: Path, fake: FakeMeta,
    http: httpx.Client,
) -> None:
    base = base_overrides(request, "embedded")
    with archive_with(tmp_path, base, write_policy(tmp_path, SHORT_DEFAULT)) as (client, rt):
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": "447700900311", "phone_number_id": PNID})
        assert r.status_code == 201, r.text
        worker = media_worker(rt, fake, http)
        item = deliver_image(client, rt, worker, fake, shared, wa_id="447700900311",
                             ts=soon("embedded"))
        for ref in (item.message, item.link, item.blob):
            assert rt.objects.stat(*ref).legal_hold, ref
        detail = rt.retention.holds.get(r.json()["id"])
        assert {i["kind"] for i in detail["items"].values()} == {"record", "raw", "media"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_blob_waits_for_its_message_under_two_person_review(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path,
    fake: FakeMeta, http: httpx.Client,
) -> None:
    base = base_overrides(request, backend)
    with archive_with(tmp_path, base, write_policy(tmp_path, REVIEW_TWO)) as (client, rt):
        until = soon(backend)
        item = deliver_image(client, rt, media_worker(rt, fake, http), fake, shared,
                             wa_id="447700900321", ts=until)
        job = pass_expiry(rt, backend, until)
        for _ in range(2):
            report = job.run()
            assert report.disposed == [], report.disposed
            assert report.queued_for_review == [item.message_id]  # the message, not its link
        assert all(present(rt, ref) for ref in (item.message, item.link, item.blob))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_longer_policy_extends_blobs_and_links_and_runs_once_per_policy_set(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path,
    fake: FakeMeta, http: httpx.Client,
) -> None:
    base = base_overrides(request, backend)
    short = write_policy(tmp_path, SHORT_DEFAULT, "short")
    until = soon(backend)
    with archive_with(tmp_path, base, short) as (client, rt):
        item = deliver_image(client, rt, media_worker(rt, fake, http), fake, shared,
                             wa_id="447700900331", ts=until)
        first = apply_if_policies_changed(rt.retention.applier, rt.state,
                                          rt.policy.fingerprint)
        assert first is not None and first.extended == []  # nothing longer yet
    # The operator lengthens the default and restarts: the scheduled apply sees a new
    # fingerprint and extends the message, and its link and blob with it.
    longer = write_policy(tmp_path, longer_default(30), "longer")
    with archive_with(tmp_path, base, longer) as (_client, rt):
        applier = rt.retention.applier
        report = apply_if_policies_changed(applier, rt.state, rt.policy.fingerprint)
        assert report is not None
        extended = {(e["key"], e["version_id"]): e["object_kind"] for e in report.extended}
        assert extended.get(item.message) == "record"
        assert extended.get(item.link) == "record" and extended.get(item.blob) == "media"
        wanted = datetime.fromtimestamp(until, UTC) + timedelta(days=30)
        for ref in (item.message, item.link, item.blob):
            info = rt.objects.stat(*ref)
            assert info.retention is not None
            assert info.retention.retain_until >= wanted - timedelta(seconds=1), ref
        assert apply_if_policies_changed(applier, rt.state, rt.policy.fingerprint) is None

        if backend == "embedded":  # past the old end, before the new one
            report2 = pass_expiry(rt, backend, until).run()
            assert report2.disposed == []
            assert all(present(rt, ref) for ref in (item.message, item.link, item.blob))


@pytest.mark.parametrize("backend", BACKENDS)
def test_disposition_recomputes_the_end_before_deleting_or_queueing(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path,
    fake: FakeMeta, http: httpx.Client,
) -> None:
    base = base_overrides(request, backend)
    until = soon(backend)
    with archive_with(tmp_path, base, write_policy(tmp_path, SHORT_DEFAULT, "a")) as (c, rt):
        deleted = deliver_image(c, rt, media_worker(rt, fake, http), fake, shared,
                                wa_id="447700900341", ts=until)
    # A longer obligation enabled, `retention apply` not run: the locks still say "soon".
    longer = write_policy(tmp_path, longer_default(30), "b")
    with archive_with(tmp_path, base, longer) as (_c, rt):
        report = pass_expiry(rt, backend, until).run()
        assert report.disposed == [] and report.queued_for_review == []
        assert all(present(rt, ref) for ref in (deleted.message, deleted.link, deleted.blob))
        assert report.not_expired >= 1
    # Same with a reviewing policy: nothing is queued under the old end.
    review = write_policy(tmp_path, longer_default(30, review=True), "c")
    with archive_with(tmp_path, base, review) as (_c, rt):
        report = pass_expiry(rt, backend, until).run()
        assert report.disposed == [] and report.queued_for_review == []


def test_review_document_shows_the_retention_end(
    request: pytest.FixtureRequest, tmp_path: Path, shared: Path, fake: FakeMeta,
    http: httpx.Client,
) -> None:
    base = base_overrides(request, "embedded")
    with archive_with(tmp_path, base, write_policy(tmp_path, REVIEW_TWO)) as (client, rt):
        until = soon("embedded")
        item = deliver_image(client, rt, media_worker(rt, fake, http), fake, shared,
                             wa_id="447700900351", ts=until)
        pass_expiry(rt, "embedded", until).run()
        r = client.get("/v1/disposition/reviews", headers=token(rt, Role.COMPLIANCE_OFFICER))
        (doc,) = [d for d in r.json()["reviews"] if d["record_id"] == item.message_id]
        shown = datetime.fromisoformat(doc["retain_until"].replace("Z", "+00:00"))
        assert shown == datetime.fromtimestamp(until, UTC)  # P0D from the message time
        assert doc["version_id"] == item.message[1] and doc["key"] == item.message[0]


def test_verify_finds_an_attachment_not_held_with_its_held_message(
    request: pytest.FixtureRequest, tmp_path: Path, shared: Path, fake: FakeMeta,
    http: httpx.Client,
) -> None:
    base = base_overrides(request, "embedded")
    with archive_with(tmp_path, base, write_policy(tmp_path, SHORT_DEFAULT)) as (client, rt):
        item = deliver_image(client, rt, media_worker(rt, fake, http), fake, shared,
                             wa_id="447700900361", ts=soon("embedded") + 3600)
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"contact": "447700900361", "phone_number_id": PNID})
        assert r.status_code == 201, r.text
        assert not [f for f in rt.proofs.verify().findings if f.kind.startswith("media:")]
        rt.objects.set_legal_hold(*item.blob, False)  # the blob loses its hold, alone
        found = [f for f in rt.proofs.verify().findings
                 if f.kind == "media:message_held_attachment_not"]
        assert [(f.key, f.version_id) for f in found] == [item.blob]
