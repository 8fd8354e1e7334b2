"""issue 14 #9: a hold whose query cannot run is refused before it exists, and a broken
hold cannot stop another hold from holding later arrivals.

Before: ``POST /v1/holds {"query": "("}`` answered 400 but left a ``placing`` hold in
``holds/_open`` for good; from then on the index follower's arrivals hook failed on it
for every batch, so the query holds sorted after it missed new matching records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.keyspace import HOLDS_OPEN_KEY as OPEN_KEY
from archiver.keyspace import HOLDS_PREFIX
from archiver.retention.common import iter_records, resolve_subject
from archiver.retention.holds import HoldScope
from archiver.runtime import Runtime
from tests.support.apps import backend_settings, running_app
from tests.support.retention import PHONE_NUMBER_ID, Msg, deliver, now, token

A, B = "447700900210", "447700900211"
BACKENDS = ["embedded", pytest.param("servers", marks=pytest.mark.integration)]


def _records(rt: Runtime, contact: str) -> list[Any]:
    subject = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, contact)
    return [r for r in iter_records(rt.objects) if r.subject == subject]


def _open(rt: Runtime) -> dict[str, Any]:
    value = rt.state.get(OPEN_KEY)
    return {} if value is None else dict(json.loads(value.value))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("query", ["(", "refund AND", "(" * 300 + "x" + ")" * 300])
def test_a_hold_with_a_bad_query_is_refused_and_leaves_nothing(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, query: str
) -> None:
    settings = backend_settings(request, tmp_path / "data", backend, inline_workers=False)
    with running_app(settings) as (client, rt):
        legal = token(rt, Role.LEGAL)
        r = client.post("/v1/holds", headers=legal, json={"case_id": "c-bad", "query": query})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"].startswith("query_")
        assert client.get("/v1/holds", headers=legal).json()["holds"] == []
        assert list(rt.state.list(HOLDS_PREFIX)) == []
        assert _open(rt) == {}


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_a_blank_query_is_no_scope_and_holds_nothing(tmp_path: Path, query: str) -> None:
    """A whitespace-only query parses to match-all: it would hold every version in scope
    and every later arrival. It is refused like a missing scope (found by the attack)."""
    settings = backend_settings(None, tmp_path / "data", "embedded", inline_workers=False)
    with running_app(settings) as (client, rt):
        legal = token(rt, Role.LEGAL)
        r = client.post("/v1/holds", headers=legal, json={"case_id": "c-blank", "query": query})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "hold_scope_missing"
        assert list(rt.state.list(HOLDS_PREFIX)) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broken_hold_is_flagged_and_the_others_still_hold_new_arrivals(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    settings = backend_settings(request, tmp_path / "data", backend, inline_workers=False)
    ts = now() + 3600
    with running_app(settings) as (client, rt):
        legal = token(rt, Role.LEGAL)
        good = client.post(
            "/v1/holds", headers=legal, json={"case_id": "c-ok", "query": "zanzibar"}
        )
        assert good.status_code == 201, good.text
        good_id = good.json()["id"]
        # A zombie as the old code left one (the API now refuses to make it): ``placing``,
        # open, with a query that cannot run, and sorted before every real hold id.
        zombie = "h_0zombie"
        holds = rt.retention.holds
        rt.state.put(HOLDS_PREFIX + zombie, json.dumps({
            "id": zombie, "case_id": "c-zombie", "reason": None, "status": "placing",
            "scope": HoldScope(query="(").to_json(), "numbers": None,
            "created_at": "2026-01-01T00:00:00+00:00", "created_by": "legal",
            "items": {}, "slots": [], "subjects": [],
        }).encode())  # fmt: skip
        holds.registry.set_open(zombie, {"subjects": [], "conversations": [], "numbers": None,
                                         "query": "("})  # fmt: skip
        assert sorted(_open(rt)) == [zombie, good_id]

        # A matching record arrives; the follower's hook runs the holds in id order.
        deliver(client, rt, [Msg(A, "zanzibar contract signed", ts)])
        deliver(client, rt, [Msg(B, "lunch at noon", ts)])
        later, other = _records(rt, A)[0], _records(rt, B)[0]
        assert rt.objects.stat(later.key, later.version_id).legal_hold
        assert not rt.objects.stat(other.key, other.version_id).legal_hold
        assert any(i["key"] == later.key for i in holds.get(good_id)["items"].values())

        # The broken hold is flagged where people look, with the reason, once.
        shown = client.get(f"/v1/holds/{zombie}", headers=legal).json()
        assert shown["broken"]["code"] == "query_syntax"
        assert "broken" not in client.get(f"/v1/holds/{good_id}", headers=legal).json()
        metrics = client.get("/metrics").text
        assert 'archiver_hold_failures_total{reason="query_syntax"}' in metrics
