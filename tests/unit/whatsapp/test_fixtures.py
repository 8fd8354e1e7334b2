"""Parser output vs reviewed expectations, for every webhook fixture in the shared corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archiver.whatsapp import EventKind, parse_delivery
from archiver.whatsapp.parser import covered, leaves

from .conftest import EXPECTATIONS, expectation_name, webhook_fixtures
from .expect import summarize

FIXTURES = webhook_fixtures()
IDS = [expectation_name(p) for p in FIXTURES]


def test_corpus_is_there(fixtures_root: Path) -> None:
    assert len(FIXTURES) >= 140


def test_every_fixture_has_an_expectation(fixtures_root: Path) -> None:
    missing = [n for n in IDS if not (EXPECTATIONS / n).is_file()]
    assert not missing, f"write and review tests/data/expectations/ for: {missing}"


def test_no_orphan_expectations(fixtures_root: Path) -> None:
    orphans = sorted({p.name for p in EXPECTATIONS.glob("*.json")} - set(IDS))
    assert not orphans


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
def test_matches_expectation(fixtures_root: Path, path: Path) -> None:
    expected = json.loads((EXPECTATIONS / expectation_name(path)).read_text())
    assert expected["reviewed"], "expectation not reviewed yet"
    got = summarize(parse_delivery(path.read_bytes()))
    assert got["problems"] == expected["problems"]
    assert got["events"] == expected["events"]


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
def test_every_leaf_lands_somewhere(fixtures_root: Path, path: Path) -> None:
    """Each leaf pointer of the body is consumed by a typed field or listed in ``unknown``.

    "Consumed" means the pointer or an ancestor is in some event's ``consumed`` (set by the
    parser only when it copied that value into a typed field); ``unknown`` keys are leaf
    pointers. Unknown values must be the body's values at those pointers.
    """
    body = path.read_bytes()
    doc = json.loads(body)
    result = parse_delivery(body)
    consumed: set[str] = set()
    unknown: dict[str, object] = {}
    for e in result.events:
        consumed |= e.consumed
        unknown.update(e.unknown)
    body_leaves = dict(leaves(doc))
    for ptr, value in unknown.items():
        assert body_leaves[ptr] == value
    lost = [p for p in body_leaves if p not in unknown and not covered(p, consumed)]
    assert not lost


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
def test_typed_pointers_exist(fixtures_root: Path, path: Path) -> None:
    """A consumed pointer must name something in the body (no phantom consumption)."""
    doc = json.loads(path.read_bytes())
    result = parse_delivery(path.read_bytes())
    for e in result.events:
        for ptr in e.consumed:
            node = doc
            for tok in ptr.split("/")[1:]:
                tok = tok.replace("~1", "/").replace("~0", "~")
                node = node[int(tok)] if isinstance(node, list) else node[tok]


def _one(name: str, root: Path):  # type: ignore[no-untyped-def]
    return parse_delivery((root / name).read_bytes()).events


def test_echo_and_history_merge(fixtures_root: Path) -> None:
    """The same business message via echo and via history: same dedup_key and content."""
    echo = _one("smb_message_echoes.json", fixtures_root)[0]
    hist = [e for e in _one("history.json", fixtures_root) if e.message_id == echo.message_id]
    assert len(hist) == 1
    assert echo.dedup_key == hist[0].dedup_key
    assert echo.content_hash == hist[0].content_hash
    assert (echo.direction, hist[0].direction) == ("outbound", "outbound")
    assert echo.contact is not None and hist[0].contact is not None
    assert echo.contact.wa_id == hist[0].contact.wa_id == "16505551234"


def test_redelivery_with_other_formatting_same_keys(fixtures_root: Path) -> None:
    """Pretty vs compact bodies, and an event re-batched with others: identical keys/hashes."""
    body = (fixtures_root / "messages_text.json").read_bytes()
    doc = json.loads(body)
    compact = json.dumps(doc, separators=(",", ":")).encode()
    batched = json.loads(body)
    other = json.loads((fixtures_root / "statuses_sent.json").read_bytes())
    batched["entry"].insert(0, other["entry"][0])
    a = parse_delivery(body).events[0]
    b = parse_delivery(compact).events[0]
    c = [e for e in parse_delivery(json.dumps(batched).encode()).events if e.kind == "message"]
    assert a.dedup_key == b.dedup_key == c[0].dedup_key
    assert a.content_hash == b.content_hash == c[0].content_hash


def test_overview_copy_is_the_same_event(fixtures_root: Path) -> None:
    a = _one("messages_text.json", fixtures_root)[0]
    b = _one("messages_text__overview_page.json", fixtures_root)[0]
    assert (a.dedup_key, a.content_hash) == (b.dedup_key, b.content_hash)


def test_same_wamid_different_content_is_detectable(fixtures_root: Path) -> None:
    doc = json.loads((fixtures_root / "messages_text.json").read_bytes())
    a = parse_delivery(json.dumps(doc).encode()).events[0]
    doc["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "tampered"
    b = parse_delivery(json.dumps(doc).encode()).events[0]
    assert a.dedup_key == b.dedup_key and a.content_hash != b.content_hash


def test_media_url_and_timestamp_do_not_change_content_hash(fixtures_root: Path) -> None:
    doc = json.loads((fixtures_root / "messages_image.json").read_bytes())
    a = parse_delivery(json.dumps(doc).encode()).events[0]
    msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["image"]["url"] = "https://lookaside.fbsbx.com/other"
    msg["timestamp"] = "1744344999"
    b = parse_delivery(json.dumps(doc).encode()).events[0]
    assert a.content_hash == b.content_hash


def test_history_placeholder_and_media_follow_up_link(fixtures_root: Path) -> None:
    hist = _one("history.json", fixtures_root)
    media = _one("history_media_asset.json", fixtures_root)[0]
    placeholder = next(e for e in hist if e.message_type == "media_placeholder")
    assert media.kind == EventKind.HISTORY_MEDIA and media.message_id == placeholder.message_id
    assert media.dedup_key != placeholder.dedup_key  # a completion, not a re-delivery


def test_partner_removed_disconnection_info(fixtures_root: Path) -> None:
    name = "alt_pywa/account_update_partner_removed_wa_app_disconnection__pywa.json"
    (e,) = _one(name, fixtures_root)
    assert e.kind == EventKind.ACCOUNT_UPDATE
    assert e.event == "PARTNER_REMOVED"  # type: ignore[attr-defined]
    info = e.attributes["disconnection_info"]  # type: ignore[attr-defined]
    assert info == {"reason": "PRIMARY_INACTIVITY", "initiated_by": "SYSTEM"}
    assert not e.unknown


def test_reaction_removed_has_no_emoji(fixtures_root: Path) -> None:
    for name in ("messages_reaction_removed.json",
                 "alt_pywa/messages_reaction_removed_empty_emoji__pywa.json",
                 "alt_pywa/messages_reaction_removed_no_emoji__pywa.json"):
        (e,) = _one(name, fixtures_root)
        assert e.reaction_emoji is None and e.reaction_to  # type: ignore[attr-defined]


def test_voice_and_animated_flags(fixtures_root: Path) -> None:
    assert _one("alt_pywa/messages_audio_voice__pywa.json", fixtures_root)[0].media[0].voice
    assert _one("alt_pywa/messages_audio__pywa.json", fixtures_root)[0].media[0].voice is False
    assert _one("messages_sticker.json", fixtures_root)[0].media[0].animated
