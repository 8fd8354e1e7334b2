"""Index documents and folds (pure): every fold is idempotent and order-insensitive."""

from __future__ import annotations

import itertools

from archiver.api.routes.search import message_view
from archiver.auth import Role
from archiver.indexing.documents import (
    Fold,
    apply_fold,
    current_reactions,
    folds_for,
    message_document,
)
from search.documents import validate

HEADER = {
    "record_id": "r_1", "kind": "message", "origin": "customer", "direction": "inbound",
    "message_type": "text",
    "business": {"phone_number_id": "1001", "display_phone_number": "15550001111"},
    "subject": "s_1", "conversation": "c_1", "message_ref": "m_1",
    "refs": {"reply_to": "m_0", "edit_of": None, "revoke_of": None, "reaction_to": None},
    "occurred_at": "2024-01-01T10:00:00Z", "captured_at": "2024-01-01T10:00:01Z",
    "policy": {"id": "finra", "retain_until": "2030-01-01T00:00:00Z"},
}  # fmt: skip
EVENT = {
    "contact": {"wa_id": "16505550001", "name": "Ali"},
    "texts": ["caption here", "file.pdf"],
    "media": [{"mime_type": "application/pdf", "sha256": "abc"}],
}


def test_message_document_has_every_field_and_validates() -> None:
    doc = message_document(HEADER, EVENT, 7, consent="opt_in", known_name="Alice Doe")
    assert doc["text"] == "caption here\nfile.pdf"
    assert doc["from"] == "16505550001" and doc["to"] == "15550001111"
    assert doc["contact_name"] == "Alice Doe" and doc["contact_profile_name"] == "Ali"
    assert doc["consent"] == "opt_in" and doc["leaf_index"] == 7
    assert doc["reply_to"] == "m_0" and doc["message_ref"] == "m_1"
    assert doc["media_mime"] == "application/pdf" and doc["policy"] == "finra"
    validate(doc)


def test_shredded_message_keeps_only_the_header() -> None:
    doc = message_document(HEADER, None, 3)
    assert "text" not in doc and "contact" not in doc and doc["conversation"] == "c_1"
    validate(doc)


FOLDS = [
    Fold("r_1", "status", {"status": "delivered", "at": "2024-01-01T10:00:05Z", "record_id": "s1"}),
    Fold("r_1", "status", {"status": "read", "at": "2024-01-01T10:01:00Z", "record_id": "s2"}),
    Fold("r_1", "edit", {"record_id": "e1", "at": "2024-01-01T10:02:00Z", "text": "new"}),
    Fold("r_1", "revoke", {"record_id": "v1", "at": "2024-01-01T10:03:00Z"}),
    Fold(
        "r_1",
        "reaction",
        {"record_id": "x1", "at": "2024-01-01T10:04:00Z", "emoji": "👍", "direction": "outbound"},
    ),
]


def test_folds_commute_and_are_idempotent() -> None:
    base = message_document(HEADER, EVENT, 1)
    results = []
    for order in itertools.permutations(FOLDS):
        doc = base
        for fold in [*order, *order]:
            doc = apply_fold(doc, fold)
        results.append(doc)
    assert all(r == results[0] for r in results)
    doc = results[0]
    assert doc["status"] == "read" and set(doc["status_times"]) == {"delivered", "read"}
    assert doc["edited"] and doc["edits"][0]["text"] == "new"
    assert doc["revoked"] and doc["revoked_at"] == "2024-01-01T10:03:00Z"
    assert [r["emoji"] for r in current_reactions(doc["reactions"])] == ["👍"]
    validate(doc)


def test_reaction_removal_and_folds_for() -> None:
    header = {**HEADER, "record_id": "r_9", "message_type": "reaction", "direction": "inbound"}
    event = {
        "reaction_to": "wamid.X",
        "reaction_emoji": None,
        "occurred_at": "2024-01-02T00:00:00Z",
    }
    (fold,) = folds_for(header, event, lambda w: "t:" + w)
    assert fold.target == "t:wamid.X" and fold.op == "reaction" and fold.data["emoji"] == ""
    doc = apply_fold({"id": "t:wamid.X", "reactions": [
        {"record_id": "a", "at": "2024-01-01T00:00:00Z", "emoji": "👍", "direction": "inbound"}]},
        fold)  # fmt: skip
    assert current_reactions(doc["reactions"]) == []


def test_revoked_text_is_redacted_for_auditors_only() -> None:
    doc = apply_fold(message_document(HEADER, EVENT, 1), FOLDS[3])
    doc = apply_fold(doc, FOLDS[2])
    assert message_view(doc, Role.LEGAL)["text"] == "caption here\nfile.pdf"
    view = message_view(doc, Role.AUDITOR)
    assert view["text"] is None and view["redacted"] is True
    assert all("text" not in e for e in view["edits"])
