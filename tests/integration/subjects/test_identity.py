"""One customer, one subject, whatever the order (issue 15, findings 10-13).

Against both stores (local folder + SQLite, and real MinIO + Elasticsearch): every
arrival order of a phone-only, a BSUID-only and a both-ids delivery, and of an old-number
message, a ``user_changed_number`` notice and a new-number message, ends in the same
state: the phone and the BSUID (old and new number) resolve to one subject, the messages
share one conversation, consent answers the same by either id, and erasure by either id
shreds every key of the person. A refused send through the proxy links nobody, and a
quick-reply "Unsubscribe" tap or an older ``system`` preference notice is an opt-out.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.auth import Role
from archiver.ingest.processor import Processor
from archiver.keys.errors import KeyShredded
from archiver.ledger.entry import EntryKind, parse_entry
from archiver.records.model import Record
from archiver.retention.common import iter_records, resolve_subject
from archiver.retention.relink import relink_archive
from archiver.runtime import Runtime
from archiver.subjects.identity import Identities, person_subjects
from tests.fakes.meta import FakeMeta
from tests.support.apps import backend_settings, running_app, sign
from tests.support.meta_app import PNID, TOKEN

pytestmark = pytest.mark.integration

DISPLAY = "15550783881"
PHONE = "16505550101"
BSUID = "US.13491208655302741918"
OLD, NEW = "16505550202", "12195550303"
BACKENDS = ["embedded", "servers"]
T0 = 1750000000  # 2025-06-15
AS_OF = "2026-01-01T00:00:00Z"  # after every event here: answers compare equal


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> Iterator[tuple[Any, Runtime, dict[str, str]]]:
    settings = backend_settings(request, tmp_path / "data", backend, inline_workers=False)
    with running_app(settings) as (client, runtime):
        token, _ = runtime.tokens.create(role=Role.COMPLIANCE_OFFICER, name="officer")
        yield client, runtime, {"Authorization": f"Bearer {token}"}


# -- deliveries -----------------------------------------------------------------------------


def envelope(value: dict[str, Any], field: str = "messages") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PNID},
        **value,
    }
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": field}]}],
    }
    return json.dumps(doc).encode()


def text_message(
    wamid: str, text: str, ts: int, *, wa_id: str | None = None, user_id: str | None = None
) -> bytes:
    contact: dict[str, Any] = {"profile": {"name": "Sheena Nelson"}}
    message: dict[str, Any] = {
        "id": wamid, "timestamp": str(ts), "type": "text", "text": {"body": text},
    }  # fmt: skip
    if wa_id:
        contact["wa_id"] = wa_id
        message["from"] = wa_id
    if user_id:
        contact["user_id"] = user_id
        message["from_user_id"] = user_id
    return envelope({"contacts": [contact], "messages": [message]})


def number_change(ts: int) -> bytes:
    """Meta's ``messages_system.json`` shape: the old number tells us the new one."""
    message = {
        "from": OLD, "id": "wamid.CHANGE", "timestamp": str(ts), "type": "system",
        "system": {"body": f"User Sheena Nelson changed from {OLD} to {NEW}",
                   "wa_id": NEW, "type": "user_changed_number"},
    }  # fmt: skip
    return envelope({"messages": [message]})


def deliver(client: Any, runtime: Runtime, body: bytes) -> None:
    """One webhook, processed and indexed before the next one arrives."""
    answer = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    assert answer.status_code == 200, answer.text
    outcomes = runtime.processor.sweep()
    assert outcomes and all(o.status in ("done", "skipped") for o in outcomes), outcomes
    runtime.follower.run_to_end()


def fixture_body(shared: Path, name: str) -> bytes:
    return (shared / "fixtures" / "whatsapp" / name).read_bytes()


# -- what the end state must be ----------------------------------------------------------------


def consent_of(client: Any, auth: dict[str, str], contact: str) -> dict[str, Any]:
    answer = client.get(
        "/v1/consent",
        params={"number": PNID, "contact": contact, "purpose": "marketing", "as_of": AS_OF},
        headers=auth,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def thread(client: Any, runtime: Runtime, auth: dict[str, str], contact: str) -> list[str]:
    """Texts of the conversation of ``contact``'s person, as the thread view shows them."""
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, contact)
    conversation = runtime.pseudo.conversation(PNID, subject)
    answer = client.get(f"/v1/conversations/{conversation}", headers=auth)
    assert answer.status_code == 200, answer.text
    return sorted(e.get("text") or "" for e in answer.json()["events"])


def person_records(runtime: Runtime, subject: str) -> list[Record]:
    members = set(person_subjects(runtime.state, subject))
    out = []
    for r in iter_records(runtime.objects):
        if r.subject in members:
            out.append(Record.parse(runtime.objects.get(r.key, r.version_id)))
    return out


def merged_leaves(runtime: Runtime) -> list[dict[str, Any]]:
    size = runtime.log.size()
    entries = [parse_entry(d) for d in runtime.log.entries(0, size)]
    return [dict(e.fields) for e in entries if e.kind is EntryKind.SUBJECT_MERGED]


def assert_one_person(
    client: Any, runtime: Runtime, auth: dict[str, str], ids: tuple[str, str], texts: list[str]
) -> None:
    first, second = ids
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, first)
    assert resolve_subject(runtime.state, runtime.pseudo, PNID, second) == subject
    # Every record of either id is the one person's; one conversation shows all messages.
    members = set(person_subjects(runtime.state, subject))
    headers = [r.header for r in iter_records(runtime.objects) if r.subject]
    assert {h["subject"] for h in headers} <= members
    assert thread(client, runtime, auth, first) == sorted(texts)
    assert thread(client, runtime, auth, second) == sorted(texts)
    # Each extra subject id was merged by a logged leaf naming pseudonyms only.
    leaves = merged_leaves(runtime)
    assert {leaf["subject"] for leaf in leaves} == members - {subject}
    assert all(leaf["into"] in members for leaf in leaves)


def assert_erasure_shreds_every_key(
    client: Any, runtime: Runtime, auth: dict[str, str], contact: str
) -> None:
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, contact)
    records = person_records(runtime, subject)
    assert records
    answer = client.post(
        "/v1/erasure", json={"phone_number_id": PNID, "contact": contact}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    for record in records:
        with pytest.raises(KeyShredded):
            runtime.keys.get(record.key_id)


# -- finding 10: phone and BSUID seen apart ---------------------------------------------------

DELIVERIES = {
    "phone": lambda: text_message("wamid.P", "hello from my phone", T0, wa_id=PHONE),
    "bsuid": lambda: text_message("wamid.B", "STOP", T0 + 60, user_id=BSUID),
    "both": lambda: text_message("wamid.PB", "thanks", T0 + 120, wa_id=PHONE, user_id=BSUID),
}


@pytest.mark.parametrize("order", list(itertools.permutations(DELIVERIES)))
def test_phone_and_bsuid_converge_to_one_person_in_every_order(
    app: tuple[Any, Runtime, dict[str, str]], order: tuple[str, ...]
) -> None:
    client, runtime, auth = app
    for name in order:
        deliver(client, runtime, DELIVERIES[name]())
    texts = ["hello from my phone", "STOP", "thanks"]
    assert_one_person(client, runtime, auth, (PHONE, BSUID), texts)
    # The STOP came with the BSUID only: both ids answer opt_out, identically.
    by_phone, by_bsuid = consent_of(client, auth, PHONE), consent_of(client, auth, BSUID)
    assert by_phone["state"] == "opt_out"
    assert by_phone == by_bsuid
    assert_erasure_shreds_every_key(client, runtime, auth, BSUID if order[0] == "phone" else PHONE)


def test_user_preferences_stop_with_both_ids_answers_by_phone_and_bsuid(
    app: tuple[Any, Runtime, dict[str, str]],
) -> None:
    client, runtime, auth = app
    deliver(client, runtime, text_message("wamid.P", "hi", T0, wa_id=PHONE))
    deliver(client, runtime, text_message("wamid.B", "hello", T0 + 60, user_id=BSUID))
    stop = {
        "contacts": [{"wa_id": PHONE, "user_id": BSUID}],
        "user_preferences": [{"wa_id": PHONE, "user_id": BSUID, "category": "marketing_messages",
                              "value": "stop", "detail": "User requested to stop marketing",
                              "timestamp": T0 + 120}],
    }  # fmt: skip
    deliver(client, runtime, envelope(stop, field="user_preferences"))
    assert consent_of(client, auth, PHONE)["state"] == "opt_out"
    assert consent_of(client, auth, BSUID) == consent_of(client, auth, PHONE)


# -- finding 11: a number change out of order ---------------------------------------------------

CHANGE = {
    "old": lambda: text_message("wamid.OLD", "from my old number", T0, wa_id=OLD),
    "change": lambda: number_change(T0 + 60),
    "new": lambda: text_message("wamid.NEW", "from my new number", T0 + 120, wa_id=NEW),
}


@pytest.mark.parametrize("order", list(itertools.permutations(CHANGE)))
def test_number_change_converges_in_every_order(
    app: tuple[Any, Runtime, dict[str, str]], order: tuple[str, ...]
) -> None:
    client, runtime, auth = app
    for name in order:
        deliver(client, runtime, CHANGE[name]())
    texts = ["from my old number", f"User Sheena Nelson changed from {OLD} to {NEW}",
             "from my new number"]  # fmt: skip
    assert_one_person(client, runtime, auth, (OLD, NEW), texts)
    assert_erasure_shreds_every_key(client, runtime, auth, NEW)


def test_hold_on_one_id_covers_the_merged_person(
    app: tuple[Any, Runtime, dict[str, str]],
) -> None:
    """A hold placed while the ids were two people covers the records of both once Meta
    links them; erasure of the person is refused while it is open."""
    client, runtime, auth = app
    legal, _ = runtime.tokens.create(role=Role.LEGAL, name="legal")
    deliver(client, runtime, text_message("wamid.B", "by bsuid", T0, user_id=BSUID))
    deliver(client, runtime, text_message("wamid.P", "by phone", T0 + 60, wa_id=PHONE))
    placed = client.post("/v1/holds", headers={"Authorization": f"Bearer {legal}"},
                         json={"phone_number_id": PNID, "contact": PHONE, "case_id": "c-1"})
    assert placed.status_code == 201, placed.text
    deliver(client, runtime, text_message("wamid.PB", "both", T0 + 120, wa_id=PHONE, user_id=BSUID))
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, BSUID)
    for r in iter_records(runtime.objects):
        if r.subject in person_subjects(runtime.state, subject):
            assert runtime.objects.stat(r.key, r.version_id).legal_hold, r.header["kind"]
    refused = client.post(
        "/v1/erasure", json={"phone_number_id": PNID, "contact": BSUID}, headers=auth
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "erasure_refused"


# -- finding 12: only Meta links identities -------------------------------------------------------


def test_a_refused_send_cannot_link_two_customers(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, fake: FakeMeta
) -> None:
    settings = backend_settings(
        request, tmp_path / "data", backend, inline_workers=False,
        graph_token=TOKEN, graph_base_url=fake.base_url,
    )  # fmt: skip
    with running_app(settings) as (client, runtime):
        service, _ = runtime.tokens.create(role=Role.SERVICE, name="crm")
        officer, _ = runtime.tokens.create(role=Role.COMPLIANCE_OFFICER, name="officer")
        auth = {"Authorization": f"Bearer {officer}"}
        # Customer A writes by phone.
        deliver(client, runtime, text_message("wamid.A", "I am A", T0, wa_id=PHONE))
        a = resolve_subject(runtime.state, runtime.pseudo, PNID, PHONE)
        # A service token's send naming A's phone and B's BSUID (never seen yet), refused
        # by Meta: the request is the caller's word, not Meta's.
        fake.queue_send_error(400)
        payload = {"messaging_product": "whatsapp", "to": PHONE, "recipient": BSUID,
                   "type": "text", "text": {"body": "hello"}}  # fmt: skip
        sent = client.post("/v1/messages", json={"phone_number_id": PNID, "payload": payload},
                           headers={"Authorization": f"Bearer {service}"})  # fmt: skip
        assert sent.status_code == 400
        assert runtime.processor.sweep()
        runtime.follower.run_to_end()
        # Customer B writes by BSUID: B is another person, not A.
        deliver(client, runtime, text_message("wamid.B", "I am B", T0 + 60, user_id=BSUID))
        b = resolve_subject(runtime.state, runtime.pseudo, PNID, BSUID)
        assert a != b
        assert resolve_subject(runtime.state, runtime.pseudo, PNID, PHONE) == a
        assert resolve_subject(runtime.state, runtime.pseudo, PNID, BSUID) == b
        assert person_subjects(runtime.state, a) == [a]
        assert merged_leaves(runtime) == []
        # Erasing A leaves B readable.
        b_records = person_records(runtime, b)
        assert_erasure_shreds_every_key(client, runtime, auth, PHONE)
        for record in b_records:
            runtime.keys.get(record.key_id)  # not shredded


# -- finding 13: every documented opt-out counts ---------------------------------------------


def test_quick_reply_unsubscribe_tap_is_an_opt_out(
    app: tuple[Any, Runtime, dict[str, str]], shared: Path
) -> None:
    """Meta's ``user_preferences`` resume (2024-11-15), then Meta's ``messages_button``
    example: the customer taps "Unsubscribe" (2025-06-16)."""
    client, runtime, auth = app
    deliver(client, runtime, fixture_body(shared, "user_preferences.json"))
    assert consent_of(client, auth, "16505551234")["state"] == "opt_in"
    deliver(client, runtime, fixture_body(shared, "messages_button.json"))
    found = consent_of(client, auth, "16505551234")
    assert (found["state"], found["since"][:10]) == ("opt_out", "2025-06-16")


def test_interactive_reply_stop_is_an_opt_out(
    app: tuple[Any, Runtime, dict[str, str]], shared: Path
) -> None:
    client, runtime, auth = app
    deliver(client, runtime, fixture_body(shared, "user_preferences.json"))
    doc = json.loads(fixture_body(shared, "messages_interactive_button_reply.json"))
    reply = doc["entry"][0]["changes"][0]["value"]["messages"][0]["interactive"]
    reply["button_reply"] = {"id": "stop-promos", "title": "Stop"}
    deliver(client, runtime, json.dumps(doc).encode())
    assert consent_of(client, auth, "16505551234")["state"] == "opt_out"


@pytest.mark.parametrize("value", ["stop", "resume"])
def test_system_user_preference_changed_is_mapped(
    app: tuple[Any, Runtime, dict[str, str]], shared: Path, value: str
) -> None:
    """The older variant: a ``system`` message of type ``user_preference_changed``."""
    client, runtime, auth = app
    before = "resume" if value == "stop" else "stop"
    prefs = json.loads(fixture_body(shared, "user_preferences.json"))
    prefs["entry"][0]["changes"][0]["value"]["user_preferences"][0]["value"] = before
    deliver(client, runtime, json.dumps(prefs).encode())
    doc = json.loads(fixture_body(shared, "messages_system.json"))
    message = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = "wamid.PREF"
    message["system"] = {"body": f"User requested to {value} marketing messages",
                         "type": "user_preference_changed", "marketing": value}  # fmt: skip
    deliver(client, runtime, json.dumps(doc).encode())
    expected = "opt_out" if value == "stop" else "opt_in"
    assert consent_of(client, auth, "16505551234")["state"] == expected


def test_a_crash_after_the_merge_still_logs_it(app: tuple[Any, Runtime, dict[str, str]]) -> None:
    """Killed after the merge pointer is written, before the batch's entries are saved:
    the retry logs the ``subject_merged`` leaf (once) and the index sees one person."""
    client, runtime, auth = app
    deliver(client, runtime, text_message("wamid.P", "by phone", T0, wa_id=PHONE))
    deliver(client, runtime, text_message("wamid.B", "by bsuid", T0 + 60, user_id=BSUID))
    body = text_message("wamid.PB", "both", T0 + 120, wa_id=PHONE, user_id=BSUID)
    answer = client.post(
        "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
    )
    assert answer.status_code == 200

    class Crash(Exception):
        pass

    crashed: list[str] = []

    def crash_once(point: str) -> None:
        if point == "after_records" and not crashed:
            crashed.append(point)
            raise Crash(point)

    p = runtime.processor
    worker = Processor(
        objects=p.objects, state=p.state, kek=p.kek, subject_keys=p.keys, pseudo=p.pseudo,
        policy=p.policy, log_appender=p.log, on_logged=p.on_logged, keywords=p.keywords,
        crash_hook=crash_once,
    )  # fmt: skip
    with pytest.raises(Crash):
        worker.sweep()
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, PHONE)
    assert len(person_subjects(runtime.state, subject)) == 2  # merged in state...
    assert merged_leaves(runtime) == []  # ...not yet logged
    assert all(o.status == "done" for o in worker.sweep())
    runtime.follower.run_to_end()
    assert len(merged_leaves(runtime)) == 1
    assert_one_person(client, runtime, auth, (PHONE, BSUID), ["by phone", "by bsuid", "both"])


def test_conversation_hold_on_the_merged_thread_holds_all_of_it(
    app: tuple[Any, Runtime, dict[str, str]],
) -> None:
    """The thread a reader sees after the merge is what a conversation hold keeps."""
    client, runtime, auth = app
    legal, _ = runtime.tokens.create(role=Role.LEGAL, name="legal")
    for body in (text_message("wamid.P", "by phone", T0, wa_id=PHONE),
                 text_message("wamid.B", "by bsuid", T0 + 60, user_id=BSUID),
                 text_message("wamid.PB", "both", T0 + 120, wa_id=PHONE, user_id=BSUID)):
        deliver(client, runtime, body)
    subject = resolve_subject(runtime.state, runtime.pseudo, PNID, PHONE)
    conversation = runtime.pseudo.conversation(PNID, subject)
    assert thread(client, runtime, auth, PHONE) == sorted(["by phone", "by bsuid", "both"])
    placed = client.post("/v1/holds", headers={"Authorization": f"Bearer {legal}"},
                         json={"conversation": conversation, "case_id": "c-2"})
    assert placed.status_code == 201, placed.text
    messages = [r for r in iter_records(runtime.objects) if r.header["kind"] == "message"]
    assert len(messages) == 3
    for r in messages:
        assert runtime.objects.stat(r.key, r.version_id).legal_hold, r.header["conversation"]


def test_relink_migration_heals_a_split_archived_before_merging(
    app: tuple[Any, Runtime, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive written under first-link-wins (no merge ever made): the new number's
    message, then the change notice. ``archiver relink`` merges them, logs it once."""
    client, runtime, auth = app
    with monkeypatch.context() as old_code:
        old_code.setattr(Identities, "_union", lambda *_args, **_kw: None)
        for name in ("old", "new", "change"):
            deliver(client, runtime, CHANGE[name]())
    old, new = (resolve_subject(runtime.state, runtime.pseudo, PNID, c) for c in (OLD, NEW))
    assert old != new  # split, as issue 15 found it
    merges = relink_archive(objects=runtime.objects, state=runtime.state, keys=runtime.keys,
                            pseudo=runtime.pseudo, log=runtime.log)  # fmt: skip
    assert [m.subject for m in merges] == [max(old, new)]
    runtime.follower.run_to_end()
    texts = ["from my old number", f"User Sheena Nelson changed from {OLD} to {NEW}",
             "from my new number"]  # fmt: skip
    assert_one_person(client, runtime, auth, (OLD, NEW), texts)
    again = relink_archive(objects=runtime.objects, state=runtime.state, keys=runtime.keys,
                           pseudo=runtime.pseudo, log=runtime.log)  # fmt: skip
    assert again == [] and len(merged_leaves(runtime)) == 1
