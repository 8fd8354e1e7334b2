"""Everything Meta sends can be found (issue 15, findings 14, 16, 17), through the real app
on SQLite and on a real Elasticsearch node, driven by Meta's own examples in
``../shared/fixtures/whatsapp``: after capture, a search finds each event by its kind and
by its key values; a history placeholder and its media are one message; contact names
and usernames are searchable, and a contact-sync ``remove`` forgets the name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.indexing.reindex import reindex
from tests.integration.api.conftest import BACKENDS, App
from tests.support.webhooks import post

FIXTURES = "fixtures/whatsapp"

# fixture -> (kind, queries that must each find it). Each query is AND-ed with
# ``kind:<kind>``; free words (``131049``, ``RINGING``) are full-text, the rest fields.
CASES: dict[str, tuple[str, list[str]]] = {
    "statuses_failed.json": ("status", [
        "type:status", "status:failed", "error:131049", "131049", '"healthy ecosystem"',
    ]),
    "statuses_sent.json": ("status", ["status:sent", "pricing:marketing", "marketing"]),
    "statuses_delivered.json": ("status", ["status:delivered", "pricing:service"]),
    "statuses_delivered_bsuid.json": ("status", ["contact:pablomorales", "pricing:marketing"]),
    "history_declined.json": ("history_error", ["error:2593109", "2593109", '"history sync"']),
    "user_preferences.json": ("user_preference", [
        "type:user_preference", "event:resume", "marketing_messages",
    ]),
    "messages_errors.json": ("webhook_error", ["error:130429", '"rate limit hit"']),
    "alt_pywa/calls_status_call_status__pywa.json": ("call", [
        "type:call", "status:ringing", "RINGING", "event:status",
    ]),
    "alt_pywa/calls_terminate_call_terminate__pywa.json": ("call", [
        "event:terminate", "status:completed", "COMPLETED",
    ]),
    "alt_pywa/calls_connect_user_initiated__pywa.json": ("call", [
        "event:connect", "USER_INITIATED", 'contact:"Test Name"',
    ]),
    "account_update_account_offboarded.json": ("account_update", [
        "type:account_update", "event:account_offboarded", "ACCOUNT_OFFBOARDED",
    ]),
    "account_update_account_violation.json": ("account_update", [
        "event:account_violation", "ADULT",
    ]),
    "account_update_partner_removed.json": ("account_update", ["event:partner_removed"]),
    "account_update_disabled_update.json": ("account_update", [
        "event:disabled_update", "REINSTATE",
    ]),
    "message_template_status_update.json": ("template_update", [
        "type:template_update", "event:approved", "APPROVED", "order_confirmation",
    ]),
    "message_template_status_update_rejected.json": ("template_update", [
        "event:rejected", "INVALID_FORMAT", "abandoned_cart",
    ]),
    "message_template_quality_update.json": ("template_update", ["YELLOW", "welcome_template"]),
    "template_category_update.json": ("template_update", ["MARKETING", "UTILITY"]),
}  # fmt: skip


def _fixture(shared: Path, name: str) -> bytes:
    return (shared / FIXTURES / name).read_bytes()


def _search(app: App, q: str, **params: Any) -> dict[str, Any]:
    r = app.get("/v1/search", app.token(Role.COMPLIANCE_OFFICER), q=q, size=100, **params)
    assert r.status_code == 200, (q, r.text)
    return dict(r.json())


@pytest.fixture(scope="module", params=BACKENDS)
def events_app(request: pytest.FixtureRequest, make_module_app: Any, shared: Path) -> App:
    app: App = make_module_app(request.param)
    for name in CASES:
        post(app.client, _fixture(shared, name))
    app.settle()
    return app


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_event_kind_is_found_by_kind_and_key_values(events_app: App, name: str) -> None:
    kind, queries = CASES[name]
    assert _search(events_app, f"kind:{kind}")["total"] >= 1
    for q in queries:
        body = _search(events_app, f"kind:{kind} {q}")
        assert body["total"] >= 1, f"{name}: 'kind:{kind} {q}' found nothing"
        assert {h["message"]["kind"] for h in body["hits"]} == {kind}


def test_type_and_kind_filters_and_facet(events_app: App) -> None:
    for kind in ("call", "status", "user_preference", "account_update", "template_update"):
        assert _search(events_app, f"type:{kind}")["total"] >= 1, kind
        assert _search(events_app, "", kind=kind)["total"] >= 1, kind
    body = _search(events_app, "", error="131049")
    assert body["total"] == 1
    failed = body["hits"][0]["message"]
    assert failed["error_codes"] == ["131049"] and failed["status"] == "failed"
    facets = _search(events_app, "")["facets"]["kind"]
    assert {"status", "call", "account_update", "template_update", "history_error"} <= set(facets)


def test_a_status_whose_message_is_not_archived_is_visible(events_app: App) -> None:
    # No message of these fixtures is archived: each status is still a document of its own.
    body = _search(events_app, "kind:status status:sent")
    hit = body["hits"][0]["message"]
    assert hit["pricing_category"] == "marketing" and hit["kind"] == "status"
    doc = events_app.runtime.index.get(body["hits"][0]["id"])
    assert doc is not None and doc["subject"].startswith("s_")  # erasure reaches it


def test_calls_are_in_the_conversation_statuses_are_not(events_app: App) -> None:
    call = _search(events_app, "kind:call event:connect USER_INITIATED")["hits"][0]["message"]
    admin = events_app.token(Role.ADMIN)
    r = events_app.get(f"/v1/conversations/{call['conversation']}", admin)
    assert r.status_code == 200, r.text
    assert [e["kind"] for e in r.json()["events"]] == ["call"]
    status = _search(events_app, "kind:status status:failed")["hits"][0]["message"]
    r = events_app.get(f"/v1/conversations/{status['conversation']}", admin)
    assert r.status_code == 404  # nothing but statuses: no line of a conversation


# ---- finding 16: history media shows once -------------------------------------------


def _history_media_thread(app: App, shared: Path, media_first: bool) -> dict[str, Any]:
    bodies = [_fixture(shared, "history.json"), _fixture(shared, "history_media_asset.json")]
    for body in reversed(bodies) if media_first else bodies:
        post(app.client, body)
        app.settle()  # separate index batches: the later one must find the earlier
    hits = _search(app, "echeveria")["hits"]
    assert len(hits) == 1, [h["message"]["kind"] for h in hits]
    r = app.get(f"/v1/conversations/{hits[0]['message']['conversation']}", app.token(Role.LEGAL))
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("media_first", [False, True], ids=["placeholder_first", "media_first"])
def test_history_media_folds_into_its_placeholder(
    make_app: Any, shared: Path, backend: str, media_first: bool
) -> None:
    app: App = make_app(backend)
    thread = _history_media_thread(app, shared, media_first)
    wamid_ts = "2025-02-10T23:42:50Z"  # the placeholder's time (history.json)
    media = [e for e in thread["events"] if e.get("media_mime") or e["type"] == "media_placeholder"]
    assert len(media) == 1, thread["events"]
    one = media[0]
    assert one["type"] == "image" and one["media_mime"] == "image/jpeg"
    assert "Black Prince echeveria" in one["text"]
    assert len(one["sources"]) == 2 and one["record_id"] in one["sources"]
    assert one["ts"] == wamid_ts and one["kind"] == "history_message"
    # Reindex rebuilds the same single message.
    rt = app.runtime
    rt.audit.flush()
    reindex(
        index=rt.index, log_reader=rt.log, objects=rt.objects, state=rt.state,
        keys=rt.keys, pseudo=rt.pseudo,
    )  # fmt: skip
    app.settle()
    assert len(_search(app, "echeveria")["hits"]) == 1


# ---- finding 17: names and usernames --------------------------------------------------


def _contact_sync(shared: Path, action: str) -> bytes:
    doc = json.loads(_fixture(shared, "smb_app_state_sync.json"))
    item = doc["entry"][0]["changes"][0]["value"]["state_sync"][0]
    item["action"] = action
    if action == "remove":
        item["metadata"]["timestamp"] = str(int(item["metadata"]["timestamp"]) + 60)
    return json.dumps(doc).encode()


def _with_new_wamid(shared: Path, name: str, suffix: str) -> bytes:
    doc = json.loads(_fixture(shared, name))
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] += suffix
    message["timestamp"] = str(int(message["timestamp"]) + 3600)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("backend", BACKENDS)
def test_names_and_usernames_are_searchable(make_app: Any, shared: Path, backend: str) -> None:
    app: App = make_app(backend)
    post(app.client, _fixture(shared, "messages_text.json"))  # from 16505551234
    # Meta's BSUID example reuses the wamid of messages_text.json: give it its own.
    post(app.client, _with_new_wamid(shared, "messages_text_bsuid_username.json", "bsuid"))
    post(app.client, _contact_sync(shared, "add"))  # 16505551234 is "Pablo Morales"
    app.settle()
    for q in ('contact:"Pablo Morales"', 'contact:"pablo morales"', "contact:Morales"):
        body = _search(app, f"type:text {q}")
        assert body["total"] == 1, q
        assert body["hits"][0]["message"]["contact_name"] == "Pablo Morales"
    # Meta's two examples both carry the profile name "Sheena Nelson".
    assert _search(app, 'type:text contact:"Sheena Nelson"')["total"] == 2
    for q in ("contact:realsheenanelson", "contact:@realsheenanelson"):
        body = _search(app, q)
        assert body["total"] == 1, q
        assert body["hits"][0]["message"]["contact_username"] == "realsheenanelson"


@pytest.mark.parametrize("backend", BACKENDS)
def test_contact_sync_remove_forgets_the_name(make_app: Any, shared: Path, backend: str) -> None:
    app: App = make_app(backend)
    post(app.client, _fixture(shared, "messages_text.json"))  # from 16505551234
    post(app.client, _contact_sync(shared, "add"))  # 16505551234 is "Pablo Morales"
    app.settle()
    admin = app.token(Role.ADMIN)
    conversation = _search(app, "type:text")["hits"][0]["message"]["conversation"]
    named = app.get(f"/v1/conversations/{conversation}", admin).json()
    assert named["contact_name"] == "Pablo Morales"

    post(app.client, _contact_sync(shared, "remove"))
    app.settle()
    r = app.get(f"/v1/conversations/{conversation}", admin)
    assert r.status_code == 200, r.text
    assert r.json()["contact_name"] == "Sheena Nelson"  # the customer's own profile name
    assert all(e.get("contact_name") != "Pablo Morales" for e in r.json()["events"])
    # A message after the remove does not learn the old name either.
    post(app.client, _with_new_wamid(shared, "messages_text.json", "later"))
    app.settle()
    r = app.get(f"/v1/conversations/{conversation}", admin)
    assert [e.get("contact_name") for e in r.json()["events"]] == ["Sheena Nelson"] * 2
    assert _search(app, 'type:text contact:"Pablo Morales"')["total"] == 0
    # The contact-sync events themselves stay findable by the name they carried.
    assert _search(app, 'kind:contact_sync contact:"Pablo Morales"')["total"] == 2
