"""Every genuine webhook payload goes through the real endpoint, signed, is answered
200, and yields the records its reviewed expectation names.

The expectations (``tests/data/expectations/*.json``) were reviewed field by field
against the fixtures; here they are checked at the record level: kind, record id
(from the dedup key), origin, direction, business, subject and conversation (derived
from the expected contact), and the decrypted texts. Fixtures share message ids (Meta's
documentation reuses them), so a later fixture may yield a source link or a flagged
conflict instead of a fresh record: both are accepted only when they point at the
expected event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.keyspace import raw_key, record_key
from archiver.records.model import Record
from archiver.runtime import Runtime
from archiver.subjects.aliases import aliases_of
from archiver.whatsapp import ContactRef
from tests.conftest import REPO, shared_dir
from tests.support.apps import backend_settings, running_app, sign

EXPECTATIONS = REPO / "tests" / "data" / "expectations"


def _fixture_files() -> list[Path]:
    root = shared_dir() / "fixtures" / "whatsapp"
    files = sorted(p for p in root.glob("*.json") if p.name != "SOURCES.json")
    files += sorted((root / "alt_pywa").glob("*.json"))
    files += sorted((root / "signature").glob("*.body.json"))
    return files


def _expectation_name(path: Path) -> str:
    root = shared_dir() / "fixtures" / "whatsapp"
    return str(path.relative_to(root)).replace("/", "__")


@pytest.fixture(scope="module", params=["embedded", "servers"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Runtime]]:
    settings = backend_settings(
        request, tmp_path_factory.mktemp("fixtures"), request.param, inline_workers=False
    )
    with running_app(settings) as pair:
        yield pair


def _records(runtime: Runtime, keys: list[str]) -> list[Record]:
    out = []
    for key in keys:
        version = next(v for v in runtime.objects.list_versions(key) if v.key == key)
        out.append(Record.parse(runtime.objects.get(key, version.version_id)))
    return out


def _business(event: dict[str, Any]) -> str:
    if event["phone_number_id"]:
        return str(event["phone_number_id"])
    return f"waba:{event['waba_id']}" if event["waba_id"] else "unknown"


def _points_at(record: Record, dedup: str, runtime: Runtime) -> bool:
    if record.header.get("dedup") == dedup:
        return True
    if record.header.get("kind") == "source":
        original = _records(runtime, [record_key(str(record.header["link_of"]))])[0]
        return original.header.get("dedup") == dedup
    return False


def test_there_are_fixtures() -> None:
    if not (shared_dir() / "fixtures" / "whatsapp").is_dir():
        pytest.fail(f"shared fixtures missing at {shared_dir()}")
    assert len(_fixture_files()) > 100


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.name)
def test_fixture_yields_expected_records(path: Path, app: tuple[TestClient, Runtime]) -> None:
    client, runtime = app
    body = path.read_bytes()
    response = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    batch = response.json()["batch"]
    outcome = runtime.processor.process(raw_key(batch))
    assert outcome.status == "done"
    expected = json.loads((EXPECTATIONS / _expectation_name(path)).read_text())
    records = _records(runtime, outcome.record_keys)
    plain = [r for r in records if "consent" not in (r.header["kind"], r.header.get("link_kind"))]
    assert len(plain) == len(expected["events"]), [r.header["kind"] for r in records]
    pseudo = runtime.pseudo
    for event, record in zip(expected["events"], plain, strict=True):
        business = _business(event)
        dedup = pseudo.token("d_", "dedup", business, event["dedup_key"])
        assert _points_at(record, dedup, runtime), (event["dedup_key"], record.header)
        header = record.header
        if header["kind"] == "source":
            assert header["origin"] == event["origin"]
            continue
        assert header["kind"] == event["kind"]
        assert header["origin"] == event["origin"]
        assert header["direction"] == event["direction"]
        assert header["message_type"] == event["message_type"]
        assert header["business"]["phone_number_id"] == event["phone_number_id"]
        expected_id = pseudo.record_id(business, event["dedup_key"])
        if "conflict" in header["flags"]:
            assert header["conflict_with"] == expected_id
        else:
            assert record.record_id == expected_id
        aliases = aliases_of(
            ContactRef(wa_id=event["contact_wa_id"], user_id=event["contact_user_id"])
        )
        if aliases.primary is not None and header["subject"] is not None:
            # The subject is the one the first-seen alias created; it never names the person.
            assert header["subject"].startswith("s_")
            assert event["contact_wa_id"] is None or event["contact_wa_id"] not in json.dumps(
                {k: v for k, v in header.items() if k != "sealed"}
            )
        if event["group_id"]:
            assert header["conversation"] == pseudo.conversation(
                business, "group:" + event["group_id"]
            )
        elif header["subject"] is not None:
            assert header["conversation"] == pseudo.conversation(business, header["subject"])
        content = record.open(runtime.keys.get(record.key_id).secret)["event"]
        assert content["texts"] == event["texts"]
        assert content["dedup_key"] == event["dedup_key"]
