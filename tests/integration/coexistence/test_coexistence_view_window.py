"""The Coexistence view follows the log a window at a time (issue 10): each number's view
is read and written once per window, not once per record, and it holds exactly what the
record-by-record view held. An account event's alert still names a number first seen in
the same window, before it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from archiver.coexistence import Coexistence
from archiver.keyspace import COEXISTENCE_VIEW_CURSOR_KEY, COEXISTENCE_VIEW_PREFIX
from archiver.ledger.entry import parse_entry
from archiver.records.model import Record
from archiver.runtime import Runtime
from archiver.store.port import StateStore, StateValue
from tests.support.apps import embedded_settings, running_app, sign
from tests.support.retention import PHONE_NUMBER_ID, Msg, post_processed

pytestmark = pytest.mark.integration

VIEW_KEY = COEXISTENCE_VIEW_PREFIX + PHONE_NUMBER_ID


class CountedState:
    """The runtime's real state store, counting the calls made on each key."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[tuple[str, str]] = Counter()

    def ping(self) -> None:
        self.inner.ping()

    def get(self, key: str) -> StateValue | None:
        self.calls["get", key] += 1
        return self.inner.get(key)

    def put(
        self, key: str, value: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        self.calls["put", key] += 1
        return self.inner.put(key, value, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.calls["delete", key] += 1
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> Iterator[str]:
        self.calls["list", prefix] += 1
        return self.inner.list(prefix)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    # No inline workers: the test alone follows the log into the view.
    with running_app(embedded_settings(tmp_path / "data", inline_workers=False)) as pair:
        yield pair


def view_of(runtime: Runtime, state: StateStore) -> Coexistence:
    return Coexistence(
        objects=runtime.objects, state=state, keys=runtime.keys, log=runtime.log,
        audit=runtime.audit, graph=None, silence_hours=24.0,
    )  # fmt: skip


def test_a_window_of_records_writes_each_number_view_once(
    app: tuple[TestClient, Runtime],
) -> None:
    client, runtime = app
    base = 1_767_000_000
    # Eight messages of one number in three deliveries, newest not last in the log.
    post_processed(client, runtime, [Msg(f"3161234{i:04d}", f"hello {i}", base + i)
                                     for i in range(3)])  # fmt: skip
    post_processed(client, runtime, [Msg("31612349999", "late one", base + 50)])
    post_processed(client, runtime, [Msg(f"3169876{i:04d}", f"again {i}", base + 10 + i)
                                     for i in range(4)])  # fmt: skip
    assert runtime.state.get(COEXISTENCE_VIEW_CURSOR_KEY) is None  # nobody followed yet

    counted = CountedState(runtime.state)
    consumed = view_of(runtime, counted).catch_up()  # type: ignore[arg-type]
    assert consumed == runtime.log.size() and consumed >= 8

    # One read and one write of the number's view for the whole window (it was one of
    # each per record: 8 and 8).
    assert counted.calls["get", VIEW_KEY] == 1
    assert counted.calls["put", VIEW_KEY] == 1
    value = runtime.state.get(VIEW_KEY)
    assert value is not None
    view = json.loads(value.value)
    # The same content the record-by-record view made: the newest capture time of the
    # number's records, its WABA and display number.
    entries = [parse_entry(runtime.log.entry(i)) for i in range(runtime.log.size())]
    newest = max(
        Record.parse(runtime.objects.get(e.key, e.version_id)).header["captured_at"]
        for e in entries
        if e.key and e.version_id and e.fields.get("event") == "message"
    )
    assert view["last_activity"] == newest
    assert view["waba_id"] == "102290129340398"
    assert view["display_phone_number"] == "15550783881"

    # A replay of the window (a crash before the cursor moved) changes nothing.
    runtime.state.delete(COEXISTENCE_VIEW_CURSOR_KEY)
    assert view_of(runtime, runtime.state).catch_up() == consumed
    again = runtime.state.get(VIEW_KEY)
    assert again is not None and json.loads(again.value) == view


def test_an_account_alert_names_a_number_first_seen_earlier_in_its_window(
    app: tuple[TestClient, Runtime], shared: Path
) -> None:
    client, runtime = app
    # The number's first message, then PARTNER_REMOVED naming its display number: one
    # window. The alert reads the number views, which must already hold the message's.
    post_processed(client, runtime, [Msg("31611112222", "first", 1_767_000_000)])
    body = (shared / "fixtures" / "whatsapp" / "account_update_partner_removed.json").read_bytes()
    answer = client.post("/webhooks/whatsapp", content=body,
                         headers={"X-Hub-Signature-256": sign(body)})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert all(o.status == "done" for o in runtime.processor.sweep())
    with capture_logs() as logs:
        view_of(runtime, runtime.state).catch_up()
    alerts = [e for e in logs if e["event"] == "coexistence_disconnected"]
    assert len(alerts) == 1 and alerts[0]["numbers"] == [PHONE_NUMBER_ID]


class CountedGets:
    """The runtime's real object store, counting the GETs of records."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.record_gets = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def get(self, key: str, version_id: str | None = None) -> bytes:
        if key.startswith("records/"):
            self.record_gets += 1
        return self.inner.get(key, version_id)  # type: ignore[attr-defined,no-any-return]


def test_the_view_and_the_index_take_records_this_process_wrote_without_reading_them(
    app: tuple[TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both follow the log right behind the processor of their process: each takes its
    # copy from the runtime's recent cache (it was one GET per record for each of them).
    client, runtime = app
    post_processed(client, runtime, [Msg(f"3162222{i:04d}", f"cached {i}", 1_767_000_000 + i)
                                     for i in range(5)])  # fmt: skip
    counted = CountedGets(runtime.objects)
    monkeypatch.setattr(runtime.follower, "objects", counted)
    view = Coexistence(
        objects=counted, state=runtime.state, keys=runtime.keys, log=runtime.log,  # type: ignore[arg-type]
        audit=runtime.audit, graph=None, silence_hours=24.0, recent=runtime.recent,
    )  # fmt: skip
    assert view.catch_up() == runtime.log.size()
    runtime.follower.catch_up()
    assert counted.record_gets == 0
    assert len(runtime.recent) == 0  # each taken by both readers: gone
    value = runtime.state.get(VIEW_KEY)
    assert value is not None and json.loads(value.value)["last_activity"]

    # Without the cache (another process, a restart) the view reads each record.
    runtime.state.delete(COEXISTENCE_VIEW_CURSOR_KEY)
    uncached = Coexistence(
        objects=counted, state=runtime.state, keys=runtime.keys, log=runtime.log,  # type: ignore[arg-type]
        audit=runtime.audit, graph=None, silence_hours=24.0,
    )  # fmt: skip
    uncached.catch_up()
    assert counted.record_gets >= 5
    again = runtime.state.get(VIEW_KEY)
    assert again is not None and json.loads(again.value) == json.loads(value.value)
