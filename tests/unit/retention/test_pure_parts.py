"""The small pure parts of retention: facts from a header, contact aliases, the hold
criteria the processor hook applies, review approvals (on the SQLite state store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver.errors import Conflict, NotFound
from archiver.keyspace import REVIEWS_PREFIX
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.common import contact_aliases, facts_of, resolve_subject
from archiver.retention.disposition import Approver, approve_review
from archiver.retention.holds import _matches, summary
from archiver.store.state_sqlite import SqliteStateStore

HEADER = {
    "record_id": "r_x", "kind": "message", "direction": "inbound", "origin": "customer",
    "message_type": "text", "flags": ["unknown_fields"],
    "business": {"phone_number_id": "106", "display_phone_number": "1555", "waba_id": "9"},
    "subject": "s_a", "conversation": "c_a",
    "occurred_at": "2026-01-02T03:04:05Z", "captured_at": "2026-01-02T03:04:06Z",
}  # fmt: skip


def test_facts_of_rebuilds_what_the_processor_decided_on() -> None:
    f = facts_of(HEADER)
    assert (f.phone_number_id, f.business_number, f.direction, f.origin) == (
        "106", "1555", "inbound", "customer")
    assert f.record_kind == "message" and f.message_type == "text"
    assert f.tags == frozenset({"unknown_fields"})
    assert f.message_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert f.capture_time == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert facts_of({**HEADER, "occurred_at": None}).message_time is None


def test_contact_aliases_tell_numbers_from_business_scoped_ids() -> None:
    assert contact_aliases("+44 7700 900001") == ["wa:447700900001"]
    assert contact_aliases("US.13491208655302741918")[0] == "bsuid:US.13491208655302741918"


def test_resolve_subject_prefers_the_alias_registry(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "s.db")
    pseudo = Pseudonymizer.from_setting("k" * 64)
    plain = resolve_subject(state, pseudo, "106", "447700900001")
    assert plain == pseudo.subject("106", "wa:447700900001")
    state.put("subjects/alias/" + pseudo.alias("106", "bsuid:US.1"), b"s_linked")
    assert resolve_subject(state, pseudo, "106", "US.1") == "s_linked"


def test_hold_criteria_match_subject_or_conversation_within_numbers() -> None:
    assert _matches({"subjects": ["s_a"], "conversations": [], "numbers": None}, HEADER)
    assert _matches({"subjects": [], "conversations": ["c_a"], "numbers": ["106"]}, HEADER)
    assert not _matches({"subjects": ["s_a"], "conversations": [], "numbers": ["107"]}, HEADER)
    assert not _matches({"subjects": ["s_b"], "conversations": ["c_b"], "numbers": None}, HEADER)
    assert not _matches({"subjects": [], "conversations": []}, {**HEADER, "subject": None})


def test_summary_counts_items_by_kind_and_drops_the_lists() -> None:
    doc = {"id": "h_1", "items": {"a@1": {"kind": "record"}, "b@1": {"kind": "raw"},
                                  "c@1": {"kind": "record"}}, "slots": ["raw/x#0"]}
    out = summary(doc)
    assert out["held_versions"] == 3 and out["held_by_kind"] == {"record": 2, "raw": 1}
    assert "items" not in out and "slots" not in out


def test_two_person_review_needs_two_different_approvers(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "s.db")
    now = datetime.now(UTC)

    def by(person: str) -> Approver:
        return Approver(person=person, token_id="t_" + person, name="same name", numbers=None)

    with pytest.raises(NotFound):
        approve_review(state, "r_x", approver=by("a"), now=now)
    state.put(REVIEWS_PREFIX + "r_x",
              b'{"record_id":"r_x","key":"records/x/r_x","version_id":"v1","required":2,'
              b'"approvals":[],"status":"pending"}')
    assert approve_review(state, "r_x", approver=by("a"), now=now)["status"] == "pending"
    with pytest.raises(Conflict):
        approve_review(state, "r_x", approver=by("a"), now=now)
    assert approve_review(state, "r_x", approver=by("b"), now=now)["status"] == "approved"
