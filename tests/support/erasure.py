"""Helpers for the erasure tests: where a marker can still be read, an archive on either
backend set (embedded, or MinIO + Elasticsearch) with GDPR policies, posting a signed
delivery and processing it, and the erasure call for ``ERASE``."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.ingest.rawbatch import RawBatchError, parse_batch
from archiver.keys.errors import KeyShredded
from archiver.keyspace import CAPTURE_KEYS_PREFIX
from archiver.records.model import Record
from archiver.retention.common import resolve_subject
from archiver.retention.holds import HoldScope
from archiver.runtime import Runtime
from tests.support.apps import embedded_settings, running_app, sign
from tests.support.retention import (
    PHONE_NUMBER_ID,
    Msg,
    body_for,
    deliver,
    now,
    s3_overrides,
    token,
)

ERASE = "447700900021"  # the contact ``erase`` erases
OTHER = "447700900078"  # someone whose message shares ERASE's raw batch
DISPLAY = "15550783881"
BACKENDS = ["embedded", "servers"]


def recoverable(rt: Runtime, needle: str) -> list[str]:
    """Where ``needle`` can still be read: any object version's bytes, any record content
    still decryptable, any raw delivery slot whose capture key is still in working state,
    any working-state value."""
    found: list[str] = []
    for v in rt.objects.list_versions(""):
        if v.is_delete_marker:
            continue
        data = rt.objects.get(v.key, v.version_id)
        if needle.encode() in data:
            found.append(f"bytes of {v.key}")
        if v.key.startswith("records/"):
            record = Record.parse(data)
            try:
                content = record.open(rt.keys.get(record.key_id).secret)
            except KeyShredded:
                continue
            if needle in json.dumps(content, ensure_ascii=False):
                found.append(f"content of {v.key}")
        elif v.key.startswith("raw/"):
            try:
                opened = parse_batch(data)
            except RawBatchError:
                continue
            keys = rt.state.get(CAPTURE_KEYS_PREFIX + opened.batch_id)
            wrapped = json.loads(keys.value)["keys"] if keys else {}
            for slot in opened.slots:
                blob = wrapped.get(str(slot.index))
                if blob is None:
                    continue
                body = opened.open(slot.index, rt.kek.unwrap(base64.b64decode(blob)))
                if needle.encode() in body:
                    found.append(f"raw slot {slot.index} of {v.key}")
    for key in rt.state.list(""):
        value = rt.state.get(key)
        if value is not None and needle.encode() in value.value:
            found.append(f"state {key}")
    return found


@contextmanager
def archive(
    request: pytest.FixtureRequest | None, tmp: Path, backend: str, **extra: Any
) -> Iterator[tuple[TestClient, Runtime]]:
    if backend in ("servers", "postgres"):
        assert request is not None
        if backend == "postgres":  # the servers, working state in PostgreSQL (state_route)
            from tests.support.pg import schema_dsn

            extra = {"state": "postgres", "state_dsn": schema_dsn(), **extra}
        overrides = s3_overrides(
            request.getfixturevalue("s3_endpoint"),
            policies="gdpr",
            index="elasticsearch",
            es_url=request.getfixturevalue("es_url"),
            es_alias=f"res-{secrets.token_hex(4)}",
            **extra,
        )
    else:
        overrides = {"inline_workers": False, "policies": "gdpr", **extra}
    with running_app(embedded_settings(tmp / "data", **overrides)) as pair:
        yield pair


def envelope(value: dict[str, Any], field: str = "messages") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_NUMBER_ID},
        **value,
    }
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": field}]}],
        }
    ).encode()


def post(client: TestClient, rt: Runtime, body: bytes) -> None:
    r = client.post(
        "/webhooks/whatsapp",
        content=body,
        headers={"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    outcomes = rt.processor.sweep()
    assert outcomes and all(o.status in ("done", "skipped") for o in outcomes), outcomes
    rt.follower.run_to_end()


def erase(client: TestClient, rt: Runtime) -> dict[str, Any]:
    status, _code, text = try_erase(client, rt)
    assert status == 200, text
    return dict(json.loads(text))


def try_erase(client: TestClient, rt: Runtime) -> tuple[int, str, str]:
    """``POST /v1/erasure`` of ERASE by a compliance officer: (status, error code, body)."""
    r = client.post("/v1/erasure", headers=token(rt, Role.COMPLIANCE_OFFICER),
                    json={"phone_number_id": PHONE_NUMBER_ID, "contact": ERASE})  # fmt: skip
    return r.status_code, r.json().get("error", {}).get("code", ""), r.text


def first_then_captured(client: TestClient, rt: Runtime, later: list[Msg]) -> None:
    """ERASE's first message, processed and indexed; then ``later`` in one delivery,
    captured only (the test decides when it is processed and indexed)."""
    deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
    body = body_for(later)
    r = client.post("/webhooks/whatsapp", content=body, headers={
        "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def index_holds(rt: Runtime, needle: str) -> bool:
    from search.port import SearchRequest

    rt.index.refresh()  # type: ignore[attr-defined]  # both adapters have it
    return rt.index.search(SearchRequest(q=needle, size=5)).total > 0


def shared_slot_behind_a_query_hold(client: TestClient, rt: Runtime) -> str:
    """ERASE's earlier message, then a delivery carrying a message of ERASE's and one of
    OTHER's, logged but not indexed, and a query hold (every number, unscoped token) on
    OTHER's: the shared slot cannot be decided until the index has it. The hold's id."""
    first_then_captured(client, rt, [Msg(ERASE, "mine zqxmine", now()),
                                     Msg(OTHER, "zqxtheirs", now())])  # fmt: skip
    assert rt.processor.sweep()  # logged, not indexed: the index lags
    r = client.post("/v1/holds", headers=token(rt, Role.LEGAL),
                    json={"case_id": "c-q", "query": "zqxtheirs"})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def erase_with_a_late_slot_kept(client: TestClient, rt: Runtime) -> tuple[str, dict[str, Any]]:
    """A subject hold on OTHER; ERASE erased while a delivery carrying ERASE's "late
    zqxlate" and OTHER's "shared zqxtheirs" arrives (before the keys are shredded): that
    late raw slot is kept for the hold. The hold's id and the erasure's answer."""
    deliver(client, rt, [Msg(OTHER, "before zqxother", now())])
    other = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, OTHER)
    hold_id = rt.retention.holds.place(HoldScope(subject=other), case_id=None, reason="r",
                                       by="legal", numbers=None)["id"]  # fmt: skip
    deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
    svc = rt.retention.erasure

    def arrive(at: str) -> None:
        if at == "before:shred_keys":
            deliver(client, rt, [Msg(ERASE, "late zqxlate", now()),
                                 Msg(OTHER, "shared zqxtheirs", now())])  # fmt: skip

    svc._crash = arrive
    try:
        out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
    finally:
        svc._crash = lambda _at: None
    assert out["capture_slots_kept"] == 1, out
    return str(hold_id), out
