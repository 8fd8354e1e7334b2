"""Pure parts of capture: proxy captures → events, consent as of, history summary."""

from __future__ import annotations

from datetime import UTC, datetime

import rfc8785

from archiver.coexistence import history_summary
from archiver.consent import contact_alias, state_as_of
from archiver.ingest.outbound import PROXY_REQUEST, PROXY_RESPONSE, parse_outbound

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PAYLOAD = {
    "messaging_product": "whatsapp",
    "to": "+16505551234",
    "type": "image",
    "image": {"id": "777", "caption": "invoice"},
    "context": {"message_id": "wamid.IN"},
}


def capture(response: dict[str, object]) -> bytes:
    return rfc8785.dumps(
        {
            "v": 1,
            "kind": "response",
            "proxy_id": "p1",
            "phone_number_id": "106540352242922",
            "payload": PAYLOAD,
            "response": response,
        }
    )


def test_request_capture_yields_no_event() -> None:
    assert parse_outbound(capture({}), PROXY_REQUEST, AT).events == ()


def test_response_capture_yields_api_send_keyed_by_wamid() -> None:
    body = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
        "messages": [{"id": "wamid.OUT"}],
    }
    (event,) = parse_outbound(capture({"status": 200, "body": body}), PROXY_RESPONSE, AT).events
    assert event.kind.value == "api_send"
    assert event.dedup_key == "msg:wamid.OUT" and event.message_id == "wamid.OUT"
    assert (event.origin.value, event.direction.value) == ("business_api", "outbound")
    assert event.contact is not None and event.contact.wa_id == "16505551234"
    assert event.texts == ("invoice",) and event.reply_to == "wamid.IN"
    assert event.media[0].media_id == "777" and event.occurred_at == AT


def test_refused_send_yields_one_failed_event() -> None:
    error = {
        "error": {"message": "(#131030) not allowed", "type": "OAuthException", "code": 131030}
    }
    (event,) = parse_outbound(capture({"status": 400, "body": error}), PROXY_RESPONSE, AT).events
    assert event.dedup_key == "send_failed:p1" and event.message_id is None
    assert event.errors[0].code == 131030
    assert event.contact is not None and event.contact.wa_id == "+16505551234"


def test_garbage_is_a_problem_not_an_exception() -> None:
    assert parse_outbound(b"\xff", PROXY_RESPONSE, AT).problems[0].code == "proxy_unreadable"
    assert parse_outbound(b"{}", "proxy:other", AT).problems[0].code == "proxy_unknown"


def test_state_as_of_takes_the_last_change_then_leaf_order() -> None:
    changes = [
        {"leaf": 5, "at": "2025-01-01T00:00:00Z", "state": "opt_in", "record_id": "r_a"},
        {"leaf": 9, "at": "2025-03-01T00:00:00Z", "state": "opt_out", "record_id": "r_b"},
        {"leaf": 7, "at": "2025-03-01T00:00:00Z", "state": "opt_in", "record_id": "r_c"},
    ]
    assert state_as_of(changes, datetime(2024, 1, 1, tzinfo=UTC)).state == "unknown"
    assert state_as_of(changes, datetime(2025, 2, 1, tzinfo=UTC)).record_id == "r_a"
    last = state_as_of(changes, datetime(2025, 3, 1, tzinfo=UTC))
    assert (last.state, last.record_id, last.changes) == ("opt_out", "r_b", 3)


def test_contact_alias() -> None:
    assert contact_alias("+1 (650) 555-1234") == "wa:16505551234"
    assert contact_alias("US.13491208655302741918") == "bsuid:US.13491208655302741918"


def test_history_summary() -> None:
    summary = history_summary(
        [
            {"phase": 0, "chunk_order": 1, "progress": 55},
            {"phase": 0, "chunk_order": 2, "progress": 100},
            {"phase": 1, "chunk_order": 1, "progress": 10},
        ]
    )
    assert summary["phases"]["0"] == {"chunks": 2, "progress": 100}
    assert summary["complete"] is True and summary["chunks"] == 3
    assert history_summary([])["complete"] is False
    assert history_summary([])["state"] == "not_started"


def test_history_declined_is_a_problem_not_progress() -> None:
    """Issue 15, finding 15: 2593109 showed as progress 55, not complete, no warning."""
    chunks = [{"phase": 0, "chunk_order": 1, "progress": 55}]
    assert history_summary(chunks)["state"] == "in_progress"
    declined = {"code": 2593109, "title": "History sync is turned off", "at": "2025-02-12"}
    summary = history_summary(chunks, [declined])
    assert summary["state"] == "declined" and summary["complete"] is False
    assert summary["errors"] == [declined]
    assert history_summary([], [{"code": 131000, "at": None}])["state"] == "failed"
