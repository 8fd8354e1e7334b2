"""The send proxy against FakeMeta: archive, forward, archive, answer — and refuse to send
when the store is down (FakeMeta's request log proves nothing went out)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from archiver.auth import Role
from archiver.keyspace import record_key
from archiver.records.model import Record
from archiver.runtime import Runtime
from tests.fakes.meta import FakeMeta
from tests.support.apps import embedded_settings, running_app
from tests.support.meta_app import PNID, TOKEN, wait_for

pytestmark = pytest.mark.integration

TEXT = {
    "messaging_product": "whatsapp",
    "to": "+1 650-555-1234",
    "type": "text",
    "text": {"body": "Your statement is ready"},
}


@pytest.fixture
def proxy(tmp_path: Path, fake: FakeMeta) -> Iterator[tuple[Any, Runtime, dict[str, str]]]:
    settings = embedded_settings(tmp_path / "data", graph_token=TOKEN, graph_base_url=fake.base_url)
    with running_app(settings) as (client, runtime):
        token, _ = runtime.tokens.create(role=Role.SERVICE, name="crm")
        yield client, runtime, {"Authorization": f"Bearer {token}"}


def sends(fake: FakeMeta) -> list[Any]:
    return [r for r in fake.requests if r.path.endswith("/messages")]


def read_record(runtime: Runtime, record_id: str) -> Record | None:
    key = record_key(record_id)
    versions = [v for v in runtime.objects.list_versions(key) if v.key == key]
    return Record.parse(runtime.objects.get(key, versions[0].version_id)) if versions else None


def test_send_is_archived_with_its_wamid(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta
) -> None:
    client, runtime, auth = proxy
    answer = client.post(
        "/v1/messages", json={"phone_number_id": PNID, "payload": TEXT}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    wamid = answer.json()["messages"][0]["id"]
    assert answer.json()["contacts"][0]["wa_id"] == "16505551234"
    assert [r.body for r in sends(fake)] == [rfc8785.dumps(TEXT)]
    assert sends(fake)[0].path == f"/v23.0/{PNID}/messages"
    record_id = runtime.pseudo.record_id(PNID, "msg:" + wamid)
    record = wait_for(lambda: read_record(runtime, record_id), what="the api_send record")
    header = record.header
    assert (header["kind"], header["origin"], header["direction"]) == (
        "api_send",
        "business_api",
        "outbound",
    )
    assert header["subject"] == runtime.pseudo.subject(PNID, "wa:16505551234")
    assert header["message_ref"] == runtime.pseudo.message_ref(PNID, wamid)
    event = record.open(runtime.keys.get(record.key_id).secret)["event"]
    assert event["texts"] == ["Your statement is ready"]
    assert event["message_id"] == wamid


def test_meta_refusal_is_passed_through_and_archived(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta
) -> None:
    client, runtime, auth = proxy
    fake.queue_send_error(400)
    answer = client.post(
        "/v1/messages", json={"phone_number_id": PNID, "payload": TEXT}, headers=auth
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 131030  # Meta's own body, verbatim
    proxy_id = answer.headers["X-Archive-Proxy-Id"]
    record_id = runtime.pseudo.record_id(PNID, "send_failed:" + proxy_id)
    record = wait_for(lambda: read_record(runtime, record_id), what="the failed-send record")
    event = record.open(runtime.keys.get(record.key_id).secret)["event"]
    assert event["errors"][0]["code"] == 131030


def test_store_down_means_nothing_is_sent(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta
) -> None:
    client, runtime, auth = proxy
    objects_dir: Path = runtime.objects._objects  # type: ignore[attr-defined]  # fault injection
    moved = objects_dir.with_name("objects-away")
    objects_dir.rename(moved)
    objects_dir.write_text("the disk is gone")  # every write under it now fails
    try:
        answer = client.post(
            "/v1/messages", json={"phone_number_id": PNID, "payload": TEXT}, headers=auth
        )
    finally:
        objects_dir.unlink()
        moved.rename(objects_dir)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "store_unavailable"
    assert answer.json()["error"]["details"]["sent"] is False
    assert sends(fake) == []


@pytest.mark.parametrize(
    "body",
    [
        {"payload": TEXT},
        {"phone_number_id": "12/../34", "payload": TEXT},
        {"phone_number_id": PNID, "payload": "text"},
        {"phone_number_id": PNID, "payload": TEXT, "extra": 1},
    ],
)
def test_malformed_bodies_are_422_in_the_one_shape(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta, body: dict[str, Any]
) -> None:
    client, _, auth = proxy
    answer = client.post("/v1/messages", json=body, headers=auth)
    assert answer.status_code == 422
    assert set(answer.json()) == {"error"}
    assert answer.json()["error"]["code"] == "invalid_request"
    assert sends(fake) == []


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.LEGAL, Role.COMPLIANCE_OFFICER])
def test_other_roles_may_not_send(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta, role: Role
) -> None:
    client, runtime, _ = proxy
    token, _ = runtime.tokens.create(role=role, name="someone")
    answer = client.post(
        "/v1/messages",
        json={"phone_number_id": PNID, "payload": TEXT},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] in ("forbidden", "role_forbidden")
    assert sends(fake) == []


def test_a_token_scoped_to_another_number_may_not_send(
    proxy: tuple[Any, Runtime, dict[str, str]], fake: FakeMeta
) -> None:
    client, runtime, _ = proxy
    token, _ = runtime.tokens.create(role=Role.SERVICE, name="other", numbers=["999"])
    answer = client.post(
        "/v1/messages",
        json={"phone_number_id": PNID, "payload": TEXT},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403
    assert sends(fake) == []


def test_without_a_graph_token_the_proxy_is_unavailable(tmp_path: Path) -> None:
    with running_app(embedded_settings(tmp_path / "data")) as (client, runtime):
        token, _ = runtime.tokens.create(role=Role.SERVICE, name="crm")
        answer = client.post(
            "/v1/messages",
            json={"phone_number_id": PNID, "payload": TEXT},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "graph_not_configured"
