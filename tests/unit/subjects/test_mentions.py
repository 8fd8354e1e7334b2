"""Who an unparsed delivery names (archiver.subjects.mentions): pure and bounded."""

from __future__ import annotations

import json

from archiver.subjects.mentions import MAX_IDS, named_contacts
from archiver.whatsapp.events import ContactRef


def test_json_walk_finds_escaped_ids_and_skips_the_business_own_number() -> None:
    body = json.dumps({"metadata": {"phone_number_id": "1065", "display_phone_number": "155507"},
                       "x": [{"wa_id": "\u0034\u0034770"}, {"from": "155507"},
                       {"user_id": "US.abc"}]}, ensure_ascii=True).encode()
    named = named_contacts(body.replace(b"44770", b"\\u0034\\u0034770"))
    assert named.business == "1065"
    assert ContactRef(wa_id="44770") in named.contacts  # only the JSON walk sees it
    assert ContactRef(user_id="US.abc") in named.contacts
    assert ContactRef(wa_id="155507") not in named.contacts


def test_raw_scan_reads_bodies_that_are_not_json_or_too_deep() -> None:
    deep = b'{"n":' * 5000 + b'{"wa_id": "447700900021"}' + b"}" * 5000
    assert named_contacts(deep).contacts == (ContactRef(wa_id="447700900021"),)
    bad = b'\xff{"phone_number_id": "1065", "contacts": [{"wa_id": "+447700900022"}'
    named = named_contacts(bad)
    assert named.business == "1065"
    assert named.contacts == (ContactRef(wa_id="447700900022"),)


def test_two_business_numbers_name_none_and_ids_are_capped() -> None:
    body = json.dumps({"a": {"phone_number_id": "1"}, "b": {"phone_number_id": "2"},
                       "c": [{"wa_id": str(10**10 + i)} for i in range(500)]}).encode()
    named = named_contacts(body)
    assert named.business is None
    assert len(named.contacts) == MAX_IDS
