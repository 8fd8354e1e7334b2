"""Consent (API + keyword, state as of any instant, rebuildable view) and Coexistence
(one-shot syncs, history progress, orphan statuses, silence) through the real app."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from archiver.audit import SYSTEM
from archiver.auth import Role
from archiver.coexistence import Coexistence
from archiver.ledger.entry import parse_entry
from archiver.runtime import Runtime
from archiver.whatsapp.graph import GraphClient
from tests.fakes.meta import FakeMeta
from tests.support.apps import embedded_settings, running_app, sign
from tests.support.meta_app import PNID, TOKEN, wait_for

pytestmark = pytest.mark.integration

CONTACT = "16505551234"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Any, Runtime, dict[str, dict[str, str]]]]:
    settings = embedded_settings(tmp_path / "data", silence_alert_hours=0.0004)  # ~1.4 s
    with running_app(settings) as (client, runtime):
        auth = {}
        for role in Role:
            token, _ = runtime.tokens.create(role=role, name=role.value)
            auth[role.value] = {"Authorization": f"Bearer {token}"}
        yield client, runtime, auth


def webhook(client: Any, shared: Path, name: str, edit: Any = None) -> None:
    doc = json.loads((shared / "fixtures" / "whatsapp" / name).read_text())
    if edit is not None:
        edit(doc)
    body = json.dumps(doc).encode()
    answer = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    assert answer.status_code == 200


def consent(client: Any, auth: dict[str, str], **extra: Any) -> Any:
    body = {
        "phone_number_id": PNID,
        "contact": "+1 (650) 555-1234",
        "purpose": "marketing",
        "evidence": "signed paper form #12",
        "actor": "branch clerk",
        **extra,
    }
    return client.post("/v1/consent", json=body, headers=auth)


def state(client: Any, auth: dict[str, str], as_of: str, contact: str = CONTACT) -> dict[str, Any]:
    answer = client.get(
        "/v1/consent",
        params={"number": PNID, "contact": contact, "purpose": "marketing", "as_of": as_of},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_consent_as_of_any_instant_and_rebuild(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]],
) -> None:
    client, runtime, auth = app
    first = consent(client, auth["service"], state="opt_in", occurred_at="2025-01-01T10:00:00Z")
    assert first.status_code == 201, first.text
    second = consent(
        client, auth["compliance_officer"], state="opt_out", occurred_at="2025-03-01T10:00:00Z"
    )
    assert second.status_code == 201
    auditor = auth["auditor"]
    assert state(client, auditor, "2024-12-31T00:00:00Z")["state"] == "unknown"
    mid = state(client, auditor, "2025-02-01T00:00:00Z")
    assert (mid["state"], mid["record_id"]) == ("opt_in", first.json()["record_id"])
    assert state(client, auditor, "2025-06-01T00:00:00Z")["state"] == "opt_out"
    # The view is derived: drop it and it is rebuilt from the log, same answers.
    for key in list(runtime.state.list("views/consent/")):
        runtime.state.delete(key)
    assert state(client, auditor, "2025-02-01T00:00:00Z")["state"] == "opt_in"
    assert state(client, auditor, "2025-06-01T00:00:00Z")["state"] == "opt_out"


def test_an_altered_consent_record_is_neither_believed_nor_a_dead_end(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]],
) -> None:
    """The view skips a record whose stored bytes are not the logged ones (verify reports
    it) and goes on with the rest of the log, instead of stopping there for good."""
    client, runtime, auth = app
    first = consent(client, auth["service"], state="opt_in", occurred_at="2025-01-01T10:00:00Z")
    second = consent(client, auth["service"], state="opt_out", occurred_at="2025-03-01T10:00:00Z")
    assert (first.status_code, second.status_code) == (201, 201)
    entries = [parse_entry(d) for d in runtime.log.entries(0, runtime.log.size())]
    consents = [e for e in entries if e.fields.get("event") == "consent" and e.key]
    assert len(consents) == 2
    altered = consents[0]
    assert altered.key is not None and altered.version_id is not None
    path = runtime.settings.data_dir / "evidence" / "objects" / altered.key / "@v"
    path = path / f"{altered.version_id}.data"
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    for key in list(runtime.state.list("views/consent/")):
        runtime.state.delete(key)
    auditor = auth["auditor"]
    assert state(client, auditor, "2025-02-01T00:00:00Z")["state"] == "unknown"
    assert state(client, auditor, "2025-06-01T00:00:00Z")["state"] == "opt_out"


def test_stop_keyword_shows_in_the_consent_state(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]], shared: Path
) -> None:
    client, _runtime, auth = app

    def stop(doc: dict[str, Any]) -> None:
        doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "STOP"
        doc["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = CONTACT
        doc["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"] = CONTACT

    webhook(client, shared, "messages_text.json", stop)
    found = wait_for(
        lambda: (
            (s := state(client, auth["legal"], "2100-01-01T00:00:00Z"))["state"] != "unknown" and s
        ),
        what="the keyword consent change",
    )
    assert found["state"] == "opt_out" and found["source"] == "keyword"


@pytest.mark.parametrize(
    "extra",
    [
        {"state": "maybe"},
        {"state": "opt_in", "purpose": "Bad Purpose!"},
        {"state": "opt_in", "occurred_at": "2025-01-01T10:00:00"},
        {"state": "opt_in", "x": 1},
    ],
)
def test_bad_consent_bodies_are_422(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]], extra: dict[str, Any]
) -> None:
    client, _, auth = app
    answer = consent(client, auth["service"], **extra)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_consent_roles(app: tuple[Any, Runtime, dict[str, dict[str, str]]]) -> None:
    client, _, auth = app
    for role in ("auditor", "legal", "admin"):
        assert consent(client, auth[role], state="opt_in").status_code == 403
    missing = client.get("/v1/consent", params={"number": PNID}, headers=auth["auditor"])
    assert missing.status_code == 422


def test_coexistence_sync_once_each(tmp_path: Path, fake: FakeMeta) -> None:
    settings = embedded_settings(tmp_path / "data")
    with running_app(settings) as (_client, runtime), httpx.Client(timeout=5) as http:
        service = Coexistence(
            objects=runtime.objects,
            state=runtime.state,
            keys=runtime.keys,
            log=runtime.log,
            audit=runtime.audit,
            graph=GraphClient(http, token=TOKEN, base_url=fake.base_url),
            silence_hours=24,
        )
        first = service.sync(PNID, SYSTEM)
        assert [first[t]["status"] for t in ("smb_app_state_sync", "history")] == [
            "requested",
            "requested",
        ]
        calls = [json.loads(r.body)["sync_type"] for r in fake.requests]
        assert calls == ["smb_app_state_sync", "history"]  # contacts first, then history
        again = service.sync(PNID, SYSTEM)
        assert again == first and len(fake.requests) == 2  # never called twice
        runtime.audit.flush()
        events = [e["event"] for e in runtime.audit.events()]
        assert events.count("coexistence:sync_requested") == 2


def test_coexistence_report(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]], shared: Path
) -> None:
    client, _, auth = app
    webhook(client, shared, "history.json")
    webhook(client, shared, "statuses_sent.json")  # a status for a message never archived
    url = f"/v1/coexistence/{PNID}"

    def ready() -> dict[str, Any] | None:
        report: dict[str, Any] = client.get(
            url, params={"orphan_hours": 0.0001}, headers=auth["admin"]
        ).json()
        return report if report["history"]["chunks"] and report["orphan_statuses"] else None

    report = wait_for(ready, what="history progress and the parked status")
    assert report["history"]["phases"]["0"]["progress"] == 55
    assert report["history"]["complete"] is False
    assert report["orphan_statuses"][0]["status"] == "sent"
    assert "orphan_statuses" in report["warnings"]
    assert report["sync"]["history"]["status"] == "not_requested"
    time.sleep(1.6)
    later = client.get(url, headers=auth["compliance_officer"]).json()
    assert later["silent"] is True and "silent" in later["warnings"]
    for role in ("auditor", "legal", "service"):
        assert client.get(url, headers=auth[role]).status_code == 403
    assert client.get("/v1/coexistence/abc", headers=auth["admin"]).status_code == 422


def test_coexistence_report_shows_history_declined(
    app: tuple[Any, Runtime, dict[str, dict[str, str]]], shared: Path
) -> None:
    """Issue 15, finding 15: after 2593109 the report showed progress 55, complete: false
    and no warning. History declined is a problem state with a warning."""
    client, _, auth = app
    webhook(client, shared, "history.json")
    webhook(client, shared, "history_declined.json")
    url = f"/v1/coexistence/{PNID}"

    def ready() -> dict[str, Any] | None:
        report: dict[str, Any] = client.get(url, headers=auth["compliance_officer"]).json()
        history = report["history"]
        return report if history["chunks"] and history.get("errors") else None

    report = wait_for(ready, what="the history chunk and the history error")
    history = report["history"]
    assert history["state"] == "declined" and history["complete"] is False
    assert [e["code"] for e in history["errors"]] == [2593109]
    assert "History sync is turned off" in history["errors"][0]["title"]
    assert "history_declined" in report["warnings"]
