"""Every event kind is a document (pure): Meta's own examples, parsed, become valid index
documents carrying their kind, name, error codes and pricing; history media folds into
its placeholder; a contact-sync remove clears the name. Issue 15, findings 14, 16, 17."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from archiver.indexing.documents import (
    EVENT_KINDS,
    MESSAGE_KINDS,
    THREAD_KINDS,
    Fold,
    apply_fold,
    event_document,
    history_media_fold,
    message_document,
)
from archiver.records.model import to_jsonable
from archiver.whatsapp import EventKind, parse_delivery
from search.documents import validate
from tests.conftest import shared_dir

FIXTURES = shared_dir() / "fixtures" / "whatsapp"


def _events(name: str) -> list[dict[str, Any]]:
    result = parse_delivery((FIXTURES / name).read_bytes())
    return [to_jsonable(e) for e in result.events]


def _header(event: dict[str, Any], record_id: str = "r_e") -> dict[str, Any]:
    return {
        "record_id": record_id, "kind": event["kind"], "origin": event["origin"],
        "direction": event["direction"], "message_type": event.get("message_type"),
        "business": {"phone_number_id": event.get("phone_number_id"),
                     "display_phone_number": event.get("display_phone_number")},
        "subject": "s_1" if event.get("contact") else None,
        "conversation": "c_1" if event.get("contact") else None,
        "status": event.get("status") if event["kind"] == "status" else None,
        "occurred_at": event.get("occurred_at"), "captured_at": "2026-01-01T00:00:00Z",
        "policy": {"id": "default", "retain_until": "2032-01-01T00:00:00Z"},
    }  # fmt: skip


def test_every_event_kind_but_messages_is_an_event_document() -> None:
    # Plus the processor's own ``unprocessable`` record kind (a delivery kept only raw).
    assert {k.value for k in EventKind} | {"unprocessable"} == EVENT_KINDS | MESSAGE_KINDS
    assert not EVENT_KINDS & MESSAGE_KINDS


def test_an_unprocessable_record_is_found_by_kind_and_reason_from_its_header_alone() -> None:
    header = {
        "v": 1, "record_id": "r_u", "kind": "unprocessable", "origin": "meta",
        "direction": "none", "message_type": None,
        "business": {"phone_number_id": "106540352242922", "display_phone_number": None,
                     "waba_id": None},
        "subject": None, "conversation": None, "message_ref": None, "status": None,
        "occurred_at": None, "captured_at": "2026-12-06T05:00:00+00:00",
        "raw": {"key": "raw/x", "version_id": "v", "slot": 2},
        "unprocessable": {"batch_id": "b", "delivery": 2, "event": None, "reason": "too_deep"},
        "flags": ["unprocessable"],
    }
    doc = event_document(header, {"error": "secret words of the hostile input"}, 7)
    assert doc["type"] == "unprocessable" and doc["event"] == "too_deep"
    assert "secret words" not in repr(doc)  # the sealed detail is never indexed
    validate(doc)
    assert MESSAGE_KINDS | {"call"} == THREAD_KINDS


@pytest.mark.parametrize(("name", "expected"), [
    ("statuses_failed.json", {"kind": "status", "type": "status", "status": "failed",
                              "error_codes": ["131049"]}),
    ("statuses_sent.json", {"status": "sent", "pricing_category": "marketing"}),
    ("history_declined.json", {"kind": "history_error", "error_codes": ["2593109"]}),
    ("messages_errors.json", {"kind": "webhook_error", "error_codes": ["130429"]}),
    ("user_preferences.json", {"kind": "user_preference", "event": "resume"}),
    ("message_template_status_update.json", {"kind": "template_update", "event": "approved"}),
    ("account_update_account_offboarded.json", {"event": "account_offboarded"}),
    ("alt_pywa/calls_status_call_status__pywa.json", {"kind": "call", "status": "ringing",
                                                      "event": "status"}),
    ("smb_app_state_sync.json", {"kind": "contact_sync", "event": "add",
                                 "contact_name": "Pablo Morales"}),
])  # fmt: skip
def test_fixture_event_documents(name: str, expected: dict[str, Any]) -> None:
    event = _events(name)[0]
    doc = validate(event_document(_header(event), event, 5))
    assert {k: doc.get(k) for k in expected} == expected
    assert doc["text"] and doc["leaf_index"] == 5
    if event.get("contact"):
        assert doc["subject"] == "s_1"  # erasure finds it by its subject


def test_event_text_holds_metas_words() -> None:
    failed = event_document(_header(e := _events("statuses_failed.json")[0]), e, None)
    assert "131049" in failed["text"] and "healthy ecosystem" in failed["text"]
    ringing = event_document(
        _header(e := _events("alt_pywa/calls_status_call_status__pywa.json")[0]), e, None
    )
    assert "RINGING" in ringing["text"].split("\n")
    rejected = event_document(
        _header(e := _events("message_template_status_update_rejected.json")[0]), e, None
    )
    assert {"REJECTED", "INVALID_FORMAT", "abandoned_cart"} <= set(rejected["text"].split("\n"))


def test_shredded_event_keeps_only_the_clear_header() -> None:
    event = _events("statuses_failed.json")[0]
    doc = validate(event_document(_header(event), None, 1))
    assert doc["kind"] == "status" and doc["status"] == "failed"
    assert "text" not in doc and "error_codes" not in doc and "contact" not in doc


def _history_pair() -> tuple[dict[str, Any], Fold]:
    placeholder = next(
        e for e in _events("history.json") if e.get("message_type") == "media_placeholder"
    )
    media = _events("history_media_asset.json")[0]
    assert placeholder["message_id"] == media["message_id"]
    doc = message_document(_header(placeholder, "r_p"), placeholder, 1)
    fold = history_media_fold(_header(media, "r_m"), media, lambda wamid: "r_p")
    assert fold is not None and fold.target == "r_p"
    return doc, fold


def test_history_media_folds_into_its_placeholder_idempotently() -> None:
    doc, fold = _history_pair()
    status = Fold("r_p", "status", {"status": "read", "at": "2025-02-11T00:00:00Z",
                                    "record_id": "s1"})  # fmt: skip
    results = []
    for order in itertools.permutations([fold, status, fold]):
        out = dict(doc)
        for f in order:
            out = apply_fold(out, f)
        results.append(out)
    assert all(r == results[0] for r in results)
    one = validate(results[0])
    assert one["sources"] == ["r_m", "r_p"] and one["type"] == "image"
    assert one["media_mime"] == "image/jpeg" and "Black Prince echeveria" in one["text"]
    assert one["id"] == "r_p" and one["status"] == "read"


def test_contact_sync_remove_clears_the_name() -> None:
    doc = {"id": "r_1", "contact_name": "Pablo Morales", "contact_profile_name": "Pablo M."}
    assert apply_fold(doc, Fold("r_1", "contact_name", {"name": None}))["contact_name"] == (
        "Pablo M."
    )
    bare = apply_fold({"id": "r_1", "contact_name": "X"}, Fold("r_1", "contact_name", {}))
    assert "contact_name" not in bare
