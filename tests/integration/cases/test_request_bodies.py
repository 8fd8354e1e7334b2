"""Case and export request bodies that mean two things: a JSON key given twice. Parsers
disagree on which copy wins (we took the last), so ``{"release_holds": false,
"release_holds": true}`` read as "keep the holds" to whatever checked the first copy and
released them here: closing a case silently released its holds. Refused with 422 now;
export bodies are capped like case bodies (64 KiB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver.auth import Role
from tests.integration.cases.seed import N1, Archive
from tests.support.apps import embedded_settings, running_app

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    with running_app(embedded_settings(tmp_path, inline_workers=False)) as (client, runtime):
        yield Archive(client, runtime)


def test_a_repeated_key_is_refused_and_closing_keeps_the_holds(archive: Archive) -> None:
    a = archive
    a.seed()
    legal = a.token(Role.LEGAL, [N1.pnid])
    r = a.client.post("/v1/cases", headers=legal, json={
        "name": "Dup", "matter_number": "M-1", "scope": {"query": "merger"}})  # fmt: skip
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    hold = a.client.post(f"/v1/cases/{cid}/holds", headers=legal, json={})
    assert hold.status_code == 201, hold.text

    body = b'{"release_holds": false, "release_holds": true}'
    assert a.client.post(f"/v1/cases/{cid}/close", content=body, headers=JSON).status_code == 401
    r = a.client.post(f"/v1/cases/{cid}/close", content=body, headers={**legal, **JSON})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request"
    assert err["details"][0]["type"] == "json_duplicate_key", err
    case = a.client.get(f"/v1/cases/{cid}", headers=legal).json()
    assert case["status"] == "open"
    assert [h["status"] for h in case["holds"]] == ["open"], case["holds"]

    nested = b'{"scope": {"query": "merger", "query": "x OR merger"}}'
    r = a.client.patch(f"/v1/cases/{cid}", content=nested, headers={**legal, **JSON})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = a.client.post(f"/v1/cases/{cid}/exports", headers={**legal, **JSON},
                      content=b'{"include_native_raw": false, "include_native_raw": true}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    r = a.client.post("/v1/subject-access", headers={**a.token(Role.ADMIN), **JSON},
                      content=b'{"contact": "16505550001", "contact": "16505550002"}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
    # An export body is capped as a case body is.
    r = a.client.post(f"/v1/cases/{cid}/exports", headers=legal,
                      json={"formats": ["x" * 70_000]})  # fmt: skip
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    # The same requests without the repetition work.
    r = a.client.post(f"/v1/cases/{cid}/exports", headers=legal, json={"formats": ["text"]})
    assert r.status_code == 202, r.text
    r = a.client.post(f"/v1/cases/{cid}/close", headers=legal, json={"release_holds": False})
    assert r.status_code == 200, r.text
    assert [h["status"] for h in r.json()["holds"]] == ["open"]
