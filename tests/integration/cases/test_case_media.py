"""A case over an image message (FakeMeta behind the media worker), on the embedded store
and real MinIO: the scope lists the message and its media link record, and holding the
scope puts the legal hold on the message, the link record and the blob."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from archiver.audit import Actor
from archiver.auth import Role
from archiver.records.model import Record
from tests.fakes.meta import FakeMeta
from tests.support.disposition_media import (
    PNID,
    TOKEN,
    archive_with,
    base_overrides,
    deliver_image,
    media_worker,
    write_policy,
)
from tests.support.disposition_media import longer_default as policy
from tests.support.retention import token

WA = "16505550077"
ACTOR = Actor(token_id=None, name="export-job", role="admin")


@pytest.fixture
def fake() -> Iterator[FakeMeta]:
    with FakeMeta(token=TOKEN) as server:
        yield server


@pytest.mark.parametrize("backend", ["embedded", pytest.param("minio",
                                                              marks=pytest.mark.integration)])
def test_scope_lists_and_holds_an_image_with_its_link_and_blob(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, shared: Path, fake: FakeMeta,
) -> None:
    base = base_overrides(request, backend)
    with httpx.Client(timeout=10) as http, archive_with(
        tmp_path, base, write_policy(tmp_path, policy(30))
    ) as (client, rt):
        worker = media_worker(rt, fake, http)
        ts = int(time.time()) - 60
        image = deliver_image(client, rt, worker, fake, shared, wa_id=WA, ts=ts)
        other = deliver_image(client, rt, worker, fake, shared, wa_id="16505550099", ts=ts)
        legal = token(rt, Role.LEGAL)
        r = client.post("/v1/cases", headers=legal, json={
            "name": "images", "matter_number": "m-1",
            "custodians": {"numbers": [PNID], "contacts": [WA]}})  # fmt: skip
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        got = list(rt.cases.records_in_scope(cid, ACTOR))
        link_record = Record.parse(rt.objects.get(*image.link)).record_id
        assert image.message_id in got and link_record in got
        assert other.message_id not in got
        r = client.post(f"/v1/cases/{cid}/holds", headers=legal)
        assert r.status_code == 201, r.text
        assert r.json()["held_by_kind"].get("media") == 1
        for ref in (image.message, image.link, image.blob):
            assert rt.objects.stat(*ref).legal_hold, ref
        for ref in (other.message, other.link, other.blob):
            assert not rt.objects.stat(*ref).legal_hold, ref
