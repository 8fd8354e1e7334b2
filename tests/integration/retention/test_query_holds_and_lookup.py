"""Against real MinIO, with Elasticsearch and with the SQLite index: a query hold catches
later arrivals through the index follower's hook (``hold_indexed_arrivals``) and through
the ``holds-refresh`` job; the per-subject lookup finds exactly what the full scan finds."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.keyspace import record_key
from archiver.retention.arrivals import hold_indexed_arrivals
from archiver.retention.common import iter_records, resolve_subject
from archiver.retention.holds import HoldScope
from archiver.retention.subject_lookup import subject_records, subject_records_indexed
from archiver.runtime import Runtime
from tests.support.retention import (
    PHONE_NUMBER_ID,
    Msg,
    app_on,
    deliver,
    now,
    s3_overrides,
    token,
)

pytestmark = pytest.mark.integration

A, B, C, D, E = (f"4477009001{n:02d}" for n in range(10, 15))


@pytest.fixture(params=["sqlite", "elasticsearch"])
def overrides(request: pytest.FixtureRequest, s3_endpoint: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if request.param == "elasticsearch":
        extra = {"index": "elasticsearch", "es_url": request.getfixturevalue("es_url"),
                 "es_alias": f"ret-q-{secrets.token_hex(4)}"}
    return s3_overrides(s3_endpoint, **extra)


def _subject(rt: Runtime, contact: str) -> str:
    return resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, contact)


def _records(rt: Runtime, contact: str) -> list[Any]:
    subject = _subject(rt, contact)
    return [r for r in iter_records(rt.objects) if r.subject == subject]


def _held(rt: Runtime, rec: Any) -> bool:
    return bool(rt.objects.stat(rec.key, rec.version_id).legal_hold)


def _hook(rt: Runtime, ids: list[str]) -> int:
    return hold_indexed_arrivals(index=rt.index, objects=rt.objects, state=rt.state,
                                 log=rt.log, keys=rt.keys, doc_ids=ids)


def test_query_hold_catches_later_arrivals_through_the_indexing_hook(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    ts = now() + 3600
    with app_on(tmp_path, **overrides) as (client, rt):
        deliver(client, rt, [Msg(A, "the zanzibar contract draft", ts)])
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                        json={"case_id": "case-q", "query": "zanzibar"})
        assert r.status_code == 201, r.text
        hold_id = r.json()["id"]
        assert r.json()["held_by_kind"]["record"] == 1

        # Later arrivals, one matching and one not, in separate raw batches: the index
        # follower (``deliver`` runs it) holds the match as it indexes it.
        deliver(client, rt, [Msg(B, "zanzibar contract signed", ts)])
        deliver(client, rt, [Msg(C, "lunch at noon", ts)])
        later, other = _records(rt, B)[0], _records(rt, C)[0]
        assert _held(rt, later) and not _held(rt, other)
        raw_key, raw_version, _ = later.raw
        assert rt.objects.stat(raw_key, raw_version).legal_hold
        other_raw = other.raw
        assert not rt.objects.stat(other_raw[0], other_raw[1]).legal_hold
        # What the follower passes is the ids it just upserted; a replay holds nothing new.
        assert _hook(rt, [later.record_id, other.record_id]) == 0

        doc = rt.retention.holds.get(hold_id)
        assert {i["kind"] for i in doc["items"].values()} == {"record", "raw"}
        assert len([i for i in doc["items"].values() if i["kind"] == "record"]) == 2

        # The safety net: an arrival the hook never saw (a follower without it, as after a
        # failed hook call) is held by the refresh job.
        hook, rt.follower.after_upsert = rt.follower.after_upsert, None
        deliver(client, rt, [Msg(D, "zanzibar again", ts)])
        rt.follower.after_upsert = hook
        missed = _records(rt, D)[0]
        assert not _held(rt, missed)
        assert rt.retention.holds.refresh_query_holds() == {hold_id: 2}
        assert _held(rt, missed)

        # Released: nothing open, the hook does nothing (one state read).
        rt.retention.holds.release(hold_id, by="legal")
        deliver(client, rt, [Msg(E, "zanzibar after release", ts)])
        late = _records(rt, E)[0]
        assert _hook(rt, [late.record_id]) == 0
        assert not _held(rt, late)


def _populate(client: Any, rt: Runtime) -> None:
    ts = now() + 3600
    deliver(client, rt, [Msg(A, "a1", ts), Msg(B, "b1", ts)])  # two subjects, one batch
    deliver(client, rt, [Msg(A, "a2", ts)])
    deliver(client, rt, [Msg(B, "b2", ts), Msg(C, "c1", ts), Msg(A, "a3", ts)])
    deliver(client, rt, [Msg(C, "c2", ts)])
    # A consent change recorded through the API: a record with no raw batch, no grant.
    r = client.post("/v1/consent", headers=token(rt, Role.COMPLIANCE_OFFICER), json={
        "phone_number_id": PHONE_NUMBER_ID, "contact": A, "purpose": "marketing",
        "state": "opt_out", "evidence": "signed form", "actor": "desk"})
    assert r.status_code == 201, r.text


def _ids(records: list[Any]) -> set[tuple[str, str]]:
    return {(r.key, r.version_id) for r in records}


def test_subject_lookup_finds_what_the_full_scan_finds(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    with app_on(tmp_path, **overrides) as (client, rt):
        _populate(client, rt)
        everything = list(iter_records(rt.objects))
        for contact in (A, B, C):
            subject = _subject(rt, contact)
            scan = [r for r in everything if r.subject == subject]
            fast = subject_records_indexed(rt.objects, rt.state, rt.log, subject)
            assert fast is not None, contact  # answered without the scan
            assert _ids(fast) == _ids(scan) and scan, contact
        # A's API consent record is among them (found through the consent view).
        a_kinds = [r.header["kind"] for r in subject_records(
            rt.objects, rt.state, rt.log, _subject(rt, A))]
        assert a_kinds.count("consent") == 1 and a_kinds.count("message") == 3
        # Unknown subject: the fast path cannot answer, the fallback scan finds nothing.
        assert subject_records_indexed(rt.objects, rt.state, rt.log, "s_nobody") is None
        assert subject_records(rt.objects, rt.state, rt.log, "s_nobody") == []

        # The services use it: a contact hold and an erasure plan see the same records.
        services = rt.retention
        b = _subject(rt, B)
        matched = services.holds.matching(HoldScope(subject=b), [PHONE_NUMBER_ID])
        assert _ids(matched) == _ids([r for r in everything if r.subject == b])
        plan = services.erasure.plan(PHONE_NUMBER_ID, C)
        assert _ids(plan.records) == _ids([r for r in everything if r.subject == plan.subject])


def test_lookup_after_erasure_and_later_arrival_still_finds_every_record(
    tmp_path: Path, s3_endpoint: Any
) -> None:
    """Erasure keeps the grants, so the records it made unreadable (still stored, still
    holdable) are found next to the contact's later ones."""
    with app_on(tmp_path, **s3_overrides(s3_endpoint, policies="gdpr")) as (client, rt):
        ts = now() + 3600
        deliver(client, rt, [Msg(A, "before erasure", ts)])
        r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                        json={"phone_number_id": PHONE_NUMBER_ID, "contact": A})
        assert r.status_code == 200, r.text
        deliver(client, rt, [Msg(A, "after erasure", ts)])
        subject = _subject(rt, A)
        fast = subject_records_indexed(rt.objects, rt.state, rt.log, subject)
        scan = [r for r in iter_records(rt.objects) if r.subject == subject]
        assert fast is not None and len(scan) == 2 and _ids(fast) == _ids(scan)


def test_subject_lookup_vs_full_scan_on_2000_records(tmp_path: Path, s3_endpoint: Any) -> None:
    """20 deliveries of 100 messages (2,000 records); the target contact is in 2 of them.
    The lookup reads the records of the subject's batches only (200 here) and finds what
    the full scan finds. Prints both times (run with ``-s``); speed is not asserted here."""
    ts = now() + 3600
    with app_on(tmp_path, **s3_overrides(s3_endpoint)) as (client, rt):
        for batch in range(20):
            msgs = [Msg(A, f"target {batch}", ts)] if batch % 10 == 0 else []
            msgs += [Msg(f"4477009{batch:02d}{n:03d}", f"filler {batch} {n}", ts)
                     for n in range(100 - len(msgs))]
            deliver(client, rt, msgs)
        subject = _subject(rt, A)
        t0 = time.perf_counter()
        fast = subject_records_indexed(rt.objects, rt.state, rt.log, subject)
        t1 = time.perf_counter()
        everything = list(iter_records(rt.objects))
        scan = [r for r in everything if r.subject == subject]
        t2 = time.perf_counter()
        assert len(everything) == 2000 and len(scan) == 2
        assert fast is not None and _ids(fast) == _ids(scan)
        print(f"\nsubject lookup: {t1 - t0:.3f}s  full scan: {t2 - t1:.3f}s  "
              f"({len(everything)} records, {len(scan)} of the subject)")
        assert all(record_key(r.record_id) == r.key for r in fast)


def test_api_consent_record_arriving_under_an_open_contact_hold_is_held(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    """``POST /v1/consent`` writes its record outside the processor: it is held on arrival
    like the processor's records when a hold names its contact."""
    with app_on(tmp_path, **overrides) as (client, rt):
        deliver(client, rt, [Msg(A, "before the hold", now())])
        r = client.post("/v1/holds", headers=token(rt, Role.LEGAL), json={
            "case_id": "case-consent", "contact": A, "phone_number_id": PHONE_NUMBER_ID})
        assert r.status_code == 201, r.text
        for contact in (A, B):
            r = client.post("/v1/consent", headers=token(rt, Role.COMPLIANCE_OFFICER), json={
                "phone_number_id": PHONE_NUMBER_ID, "contact": contact, "purpose": "marketing",
                "state": "opt_out", "evidence": "signed form", "actor": "desk"})
            assert r.status_code == 201, r.text
        consent = {
            contact: [r for r in _records(rt, contact) if r.header["kind"] == "consent"]
            for contact in (A, B)
        }
        assert len(consent[A]) == 1 and len(consent[B]) == 1
        assert _held(rt, consent[A][0])  # the hold names A
        assert not _held(rt, consent[B][0])  # and not B
