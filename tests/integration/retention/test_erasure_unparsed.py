"""Erasure reaches deliveries the parser could not tie to a contact (found by a live
attack, embedded default, gdpr policy): a delivery with an unknown webhook field, one
nested too deep to parse, one that is not UTF-8, and one naming two people. Each quotes
the contact (wa_id, name, text); after the contact's erasure none of it is readable — not
the index, not the raw slot, not the record's sealed content — and ``archiver verify``
finds nothing; another contact's deliveries stay readable. Embedded and MinIO + ES."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.keys.errors import KeyShredded
from archiver.ledger.verify_objects import FindingKind
from archiver.records.model import Record
from archiver.retention.residue import erasure_residue
from archiver.runtime import Runtime
from tests.support.erasure import BACKENDS, ERASE, archive, erase, index_holds, post, recoverable
from tests.support.retention import DISPLAY, PHONE_NUMBER_ID, Msg, body_for, now

pytestmark = pytest.mark.integration

KEEP = "447700900031"
OTHER = "447700900032"


def _unknown_field(wa_ids: list[str], text: str) -> bytes:
    """A delivery of a webhook field this version does not know, quoting contacts."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
             "contacts": [{"profile": {"name": "Pat " + text}, "wa_id": w} for w in wa_ids],
             "text": text}
    return json.dumps({"object": "whatsapp_business_account", "entry": [
        {"id": "102290129340398",
         "changes": [{"value": value, "field": "future_feature"}]}]}).encode()


def _too_deep(wa_id: str, text: str) -> bytes:
    """A messages delivery whose body nests 70 deep: kept as ``unprocessable``."""
    deep: Any = {"text": text}
    for _ in range(70):
        deep = {"n": deep}
    body = json.loads(body_for([Msg(wa_id, text, now())]))
    body["entry"][0]["changes"][0]["value"]["extra"] = deep
    return json.dumps(body).encode()


def _bad_utf8(wa_id: str, text: str) -> bytes:
    """A body that is not UTF-8 (so not JSON): kept whole as an ``unknown`` event."""
    return (b'{"metadata": {"phone_number_id": "' + PHONE_NUMBER_ID.encode()
            + b'"}, "contacts": [{"wa_id": "' + wa_id.encode() + b'"}], "text": "'
            + text.encode() + b' \xff\xfe"}')


def _deliveries(client: TestClient, rt: Runtime, marker: str, keep: str) -> None:
    t = now()
    post(client, rt, body_for([Msg(ERASE, f"hello {marker}", t)]))
    post(client, rt, _unknown_field([ERASE], f"unknown {marker}"))
    post(client, rt, _too_deep(ERASE, f"deep {marker}"))
    post(client, rt, _bad_utf8(ERASE, f"bytes {marker}"))
    post(client, rt, _unknown_field([ERASE, OTHER], f"two {marker}"))
    # Another contact's unrelated deliveries, of the same kinds.
    post(client, rt, body_for([Msg(KEEP, f"hello {keep}", t)]))
    post(client, rt, _unknown_field([KEEP], f"unknown {keep}"))
    post(client, rt, _too_deep(KEEP, f"deep {keep}"))


def _unparsed(rt: Runtime) -> list[Record]:
    out = []
    for v in rt.objects.list_versions("records/"):
        record = Record.parse(rt.objects.get(v.key, v.version_id))
        if record.header["kind"] in ("unknown", "unprocessable"):
            out.append(record)
    return out


def _readable(rt: Runtime, record: Record) -> bool:
    try:
        rt.keys.get(record.key_id)
    except KeyShredded:
        return False
    return True


@pytest.mark.parametrize("backend", BACKENDS)
def test_erasure_reaches_deliveries_the_parser_could_not_tie_to_the_contact(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    marker, keep = "zqun" + secrets.token_hex(5), "zqkp" + secrets.token_hex(5)
    with archive(request, tmp_path, backend) as (client, rt):
        _deliveries(client, rt, marker, keep)
        unparsed = _unparsed(rt)
        # unknown field x3, bad UTF-8, too deep x2: the attack's shapes all archived.
        assert sorted(r.header["kind"] for r in unparsed) == (
            ["unknown"] * 4 + ["unprocessable"] * 2)
        before = recoverable(rt, marker)
        assert sum(w.startswith("content of") for w in before) >= 4  # message + 3 unknown
        assert sum(w.startswith("raw slot") for w in before) == 5
        assert index_holds(rt, marker)

        out = erase(client, rt)
        assert out["capture_slots_shredded"] == 5

        assert recoverable(rt, marker) == []
        assert not index_holds(rt, marker)
        for word in ("unknown", "deep", "bytes", "two"):
            assert not index_holds(rt, f"{word} {marker}")
        # Each record quoting the contact is sealed under a destroyed key.
        mine = [r for r in _unparsed(rt) if keep not in json.dumps(r.header)
                and r.header.get("subject") != _subject_of(rt, KEEP)]
        assert len(mine) == 4 and not any(_readable(rt, r) for r in mine)
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []

        # The other contact: every delivery still readable, searchable, keyed.
        after = recoverable(rt, keep)
        assert sum(w.startswith("content of") for w in after) == 2  # message + unknown
        assert sum(w.startswith("raw slot") for w in after) == 3
        assert index_holds(rt, keep)


def _subject_of(rt: Runtime, wa_id: str) -> str:
    from archiver.retention.common import resolve_subject

    return resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, wa_id)


def test_verify_reports_a_readable_subjectless_record_of_a_shredded_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive processed before records named their people (their ``unknown`` records
    sealed under the business key, without subject): after an erasure shreds their slots,
    ``archiver verify`` reports each such record still readable and still indexed."""
    from archiver.ingest.processor import Processor

    # (raising=False: before the fix the processor had no such step at all.)
    monkeypatch.setattr(Processor, "_with_mentions", lambda self, made, body: made,
                        raising=False)
    marker = "zqlg" + secrets.token_hex(5)
    with archive(None, tmp_path, "embedded") as (client, rt):
        post(client, rt, body_for([Msg(ERASE, f"hello {marker}", now())]))
        post(client, rt, body_for([Msg(ERASE, f"again {marker}", now())]))
        # The slot is the contact's (one message), and it quotes the contact in an
        # unknown field too: the legacy record is subject-less, under the business key.
        body = json.loads(_unknown_field([ERASE], f"unknown {marker}"))
        body["entry"][0]["changes"].append(
            json.loads(body_for([Msg(ERASE, f"third {marker}", now())]))["entry"][0]["changes"][0])
        post(client, rt, json.dumps(body).encode())
        legacy = [r.record_id for r in _unparsed(rt)]
        assert len(legacy) == 1 and _readable(rt, _unparsed(rt)[0])
        saved = [d for d in (rt.index.get(i) for i in legacy) if d is not None]
        assert saved and "text" in saved[0]
        erase(client, rt)
        # The erasure purges it from the index now; one made before did not.
        assert rt.index.get(legacy[0]) is None
        rt.index.upsert(saved)
        rt.index.refresh()  # type: ignore[attr-defined]  # both adapters have it
        findings = erasure_residue(rt.log, rt.objects, rt.state, rt.index)
        kinds = sorted(f.kind for f in findings)
        assert kinds == sorted([FindingKind.ERASED_KEY_MATERIAL, FindingKind.ERASED_INDEXED])
        assert all(legacy[0] in f.message for f in findings)
        assert "quotes shredded raw slot" in next(
            f.message for f in findings if f.kind is FindingKind.ERASED_KEY_MATERIAL)
