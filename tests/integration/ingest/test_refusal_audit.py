"""issue 14 #5: strangers cannot write at will into the locked audit store, and a backed-up
audit queue is bounded without ever letting an authenticated read go unaudited.

Before: every refused signature or handshake was one audit event holding the raw
User-Agent (40 requests with a 60 KB User-Agent added 2.45 MB of objects locked for ten
years and 40 log leaves), and the queue grew without bound while the store was down.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.keyspace import AUDIT_PREFIX
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.runtime import Runtime
from archiver.security_events import MAX_AGENTS, PREFIX_CHARS
from tests.support.apps import backend_settings, running_app

HUGE_UA = "Mozilla/5.0 " + "A" * 60_000
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
T0 = 1_800_000_000.0  # a window boundary (divisible by 60)


@pytest.fixture(params=["embedded", pytest.param("servers", marks=pytest.mark.integration)])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = backend_settings(
        request, tmp_path / "data", request.param, inline_workers=False, audit_queue_max=200
    )
    with running_app(settings) as pair:
        yield pair


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def audit_bytes(rt: Runtime) -> int:
    total = 0
    for key in rt.objects.list_keys(AUDIT_PREFIX):
        for v in rt.objects.list_versions(key):
            if v.key == key and not v.is_delete_marker:
                total += rt.objects.stat(key, v.version_id).size
    return total


def audit_events(rt: Runtime, action: str) -> list[dict[str, Any]]:
    return list(rt.audit.events(action=action))


def audit_leaves(rt: Runtime) -> int:
    size = rt.log.size()
    return sum(1 for d in rt.log.entries(0, size) if parse_entry(d).kind is EntryKind.AUDIT)


def forged(client: TestClient, ua: str = HUGE_UA) -> None:
    r = client.post(
        "/webhooks/whatsapp",
        content=BODY,
        headers={"X-Hub-Signature-256": "sha256=" + "0" * 64, "User-Agent": ua},
    )
    assert r.status_code == 401, r.text


def settle(rt: Runtime) -> None:
    rt.security.flush_due(force=True)
    rt.audit.flush()


def test_refused_requests_store_bounded_bytes_one_event_per_window_and_source(
    app: tuple[TestClient, Runtime],
) -> None:
    client, rt = app
    clock = Clock(T0 + 1)
    rt.security.clock = clock
    settle(rt)
    bytes_before, leaves_before = audit_bytes(rt), audit_leaves(rt)

    for i in range(40):  # one window (T0 … T0+60)
        clock.at = T0 + 1 + i
        forged(client)
    for i in range(3):  # handshakes with a wrong verify token, same window
        r = client.get(
            "/webhooks/whatsapp",
            params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
            headers={"User-Agent": HUGE_UA + str(i)},
        )
        assert r.status_code == 403
    clock.at = T0 + 61  # the next window: the first one is due
    for n in range(MAX_AGENTS + 3):  # many distinct agents: at most MAX_AGENTS kept
        forged(client, ua=f"agent-{n} " + "B" * 10_000)
    settle(rt)

    added = audit_bytes(rt) - bytes_before
    refused = 40 + 3 + MAX_AGENTS + 3
    leaves = audit_leaves(rt) - leaves_before
    print(f"\naudit bytes for {refused} refused requests: {added} ({added / refused:.0f}"
          f" per request); audit leaves: {leaves}")  # fmt: skip
    assert added / refused < 200, added  # was ~61,000 per request
    assert added < 16_000, added
    # One audit event (one log leaf) per window, kind and source.
    assert audit_leaves(rt) - leaves_before == 3
    signatures = audit_events(rt, "webhook:signature_refused")
    assert [e["details"]["count"] for e in signatures] == [40, MAX_AGENTS + 3]
    first, second = (e["details"] for e in signatures)
    assert first["aggregated"] and first["window_s"] == 60
    assert first["reasons"] == {"mismatch": 40} and first["bytes"] == 40 * len(BODY)
    [agent] = first["user_agents"]
    assert agent["count"] == 40 and agent["chars"] == len(HUGE_UA)
    assert agent["prefix"] == HUGE_UA[:PREFIX_CHARS]
    assert agent["sha256"] == hashlib.sha256(HUGE_UA.encode()).hexdigest()
    assert len(second["user_agents"]) == MAX_AGENTS and second["user_agents_other"] == 3
    handshakes = audit_events(rt, "webhook:handshake_refused")
    assert [e["details"]["count"] for e in handshakes] == [3]
    # Nothing of the 60 KB header is anywhere in the audit objects.
    for key in rt.objects.list_keys(AUDIT_PREFIX):
        for v in rt.objects.list_versions(key):
            if v.key == key:
                assert b"A" * (PREFIX_CHARS + 1) not in rt.objects.get(key, v.version_id)
    metrics = client.get("/metrics").text
    assert 'archiver_security_events_total{kind="webhook:signature_refused",reason="mismatch"}' in (
        metrics
    )


def test_a_backed_up_queue_sheds_strangers_and_refuses_reads_never_losing_one(
    app: tuple[TestClient, Runtime],
) -> None:
    client, rt = app
    audit = rt.audit
    settle(rt)
    # The store "stops taking writes": the audit thread no longer flushes by itself.
    audit.flush_interval = 3600.0
    time.sleep(0.6)  # the thread's current 0.25 s wait ends; its next one is an hour
    audit.flush()
    clock = Clock(T0 + 1)
    rt.security.clock = clock
    rt.security.flush_due(force=True)
    assert audit.depth() == 0 and audit.max_pending == 200

    # Strangers: each request in a window of its own, so each ends one aggregate. They
    # may fill a quarter of the queue at most; the rest are shed and counted.
    for i in range(120):
        clock.at = T0 + 1 + 60 * i
        forged(client, ua=f"flood-{i}")
    assert audit.depth() == audit.shed_above == 50
    shed = client.get("/metrics").text
    assert 'archiver_audit_events_shed_total{event="webhook:signature_refused"}' in shed

    # Authenticated reads fill the rest; once the queue cannot promise an event, the read
    # is refused with 503 before it runs, never served unaudited.
    plain, _ = rt.tokens.create(role=Role.COMPLIANCE_OFFICER, name="ana")
    auth = {"Authorization": f"Bearer {plain}"}
    answers = [client.get("/v1/search", headers=auth, params={"q": f"w{i}"}) for i in range(200)]
    ok = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert ok and refused
    assert {r.status_code for r in refused} == {503}
    assert {r.json()["error"]["code"] for r in refused} == {"audit_unavailable"}
    assert audit.depth() <= audit.max_pending  # memory is bounded
    # The store "comes back": every served read is on the record.
    audit.flush()
    searched = audit_events(rt, "search:executed")
    served = [e for e in searched if e["actor"]["name"] == "ana"]
    assert len(served) == len(ok)
    assert sorted(e["details"]["query"] for e in served) == sorted(
        json.loads(json.dumps(f"w{i}")) for i, r in enumerate(answers) if r.status_code == 200
    )
    # And new reads are served again.
    assert client.get("/v1/search", headers=auth, params={"q": "again"}).status_code == 200
