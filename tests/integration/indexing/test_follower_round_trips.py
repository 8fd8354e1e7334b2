"""The index follower's working-state round trips (issue 10), and what keeps them honest.

* A subject met for the first time costs no read of its merge pointer, consent state or
  contact-sync name: the follower lists those prefixes once and keeps the listing while
  it runs on (same generation, its batches back to back, ``keys/epoch`` unchanged).
* A busy batch reads ``keys/epoch`` twice (its key session's, and the check after the
  upsert) and the active generation once.
* The kept listing is dropped when another follower indexed in between: consent state that
  follower wrote still reaches the documents.

Embedded backend (local folder + SQLite): the real stores, counted by a forwarding wrapper.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.indexing import follower as follower_module
from archiver.indexing.follower import IndexFollower
from archiver.keys.store import KeyStore
from archiver.keyspace import INDEX_ACTIVE_KEY, KEYS_EPOCH_KEY
from archiver.retention.common import resolve_subject
from archiver.runtime import Runtime
from archiver.store.port import StateStore, StateValue
from search.port import SearchRequest
from search.sqlite import SqliteIndex
from tests.support.apps import backend_settings, running_app, sign
from tests.support.retention import PHONE_NUMBER_ID, Msg, body_for, post_processed

pytestmark = pytest.mark.integration

TS = 1750000000


class _Counted:
    """The real working-state store; ``get`` calls counted per key (forwarded as they are)."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.gets: Counter[str] = Counter()
        self._lock = threading.Lock()

    def get(self, key: str) -> StateValue | None:
        with self._lock:
            self.gets[key] += 1
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def under(self, *prefixes: str) -> int:
        return sum(n for k, n in self.gets.items() if k.startswith(prefixes))


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[Any, Runtime]]:
    settings = backend_settings(None, tmp_path / "data", "embedded", inline_workers=False)
    with running_app(settings) as (client, rt):
        yield client, rt


def _follower(rt: Runtime, state: Any, index: SqliteIndex, generation: str | None) -> IndexFollower:
    # Its own key store over the same (counted) state: its session reads count too.
    return IndexFollower(log_reader=rt.log, objects=rt.objects, state=state,
                         keys=KeyStore(state, rt.kek), index=index, pseudo=rt.pseudo,
                         generation=generation)  # fmt: skip


def _index(tmp_path: Path) -> SqliteIndex:
    index = SqliteIndex(tmp_path / f"rt-{secrets.token_hex(3)}.sqlite3")
    index.ensure_index()
    return index


def test_new_subjects_cost_no_per_subject_reads_and_a_batch_few_fixed_ones(
    embedded: tuple[Any, Runtime], tmp_path: Path
) -> None:
    client, rt = embedded
    post_processed(client, rt,
                   [Msg(f"4477009005{i:02d}", f"ibis first {i}", TS + i) for i in range(3)])
    state = _Counted(rt.state)
    index = _index(tmp_path)
    follower = _follower(rt, state, index, None)  # follows the active generation
    assert follower.run_to_end() > 0
    # Five people never seen before, in the next two batches (back to back: the loop
    # while it is behind; the first after an idle poll reads the generation afresh).
    fresh = [f"4477009006{i:02d}" for i in range(5)]
    post_processed(client, rt, [Msg(w, f"ibis second {w}", TS + 10) for w in fresh[:2]])
    middle = rt.log.size()
    post_processed(client, rt, [Msg(w, f"ibis second {w}", TS + 10) for w in fresh[2:]])
    assert follower.catch_up(middle - follower.cursor(), visible=False) > 0
    state.gets.clear()
    assert follower.catch_up(visible=False) > 0
    assert follower.lag() == 0
    per_subject = state.under("subjects/merged/", "index/consent/", "index/names/")
    assert per_subject == 0, state.gets
    assert state.gets[KEYS_EPOCH_KEY] == 2, state.gets
    assert state.gets[INDEX_ACTIVE_KEY] == 1 + 1, state.gets  # the batch's, and lag()'s
    # ... and the documents are all there, under their own subjects.
    hits = index.search(SearchRequest(q="ibis", size=20)).hits
    assert len(hits) == 8
    subjects = {resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, w) for w in fresh}
    assert subjects <= {h.doc.get("subject") for h in hits}


def test_state_another_follower_wrote_in_between_still_reaches_the_documents(
    embedded: tuple[Any, Runtime], tmp_path: Path
) -> None:
    """Follower one indexes, follower two indexes a STOP (consent state written), then
    follower one goes on: its kept listing (no consent state for anyone) must not hide the
    state follower two wrote."""
    client, rt = embedded
    contact = "447700900700"
    index = _index(tmp_path)
    one = _follower(rt, rt.state, index, "twin")
    two = _follower(rt, rt.state, index, "twin")
    post_processed(client, rt, [Msg(contact, "heron first words", TS)])
    assert one.run_to_end() > 0
    post_processed(client, rt, [Msg(contact, "STOP", TS + 1)])
    assert two.run_to_end() > 0
    post_processed(client, rt, [Msg(contact, "heron last words", TS + 2)])
    assert one.run_to_end() > 0
    hits = {h.doc["text"]: h.doc for h in index.search(SearchRequest(q="heron", size=10)).hits}
    assert set(hits) == {"heron first words", "heron last words"}
    assert hits["heron first words"].get("consent") is None
    assert hits["heron last words"].get("consent") == "opt_out", hits


def _posted(client: Any, rt: Runtime, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    r = client.post("/webhooks/whatsapp", content=body,
                    headers={"X-Hub-Signature-256": sign(body),
                             "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    outcomes = rt.processor.sweep()
    assert outcomes and all(o.status == "done" for o in outcomes), outcomes


def test_a_fold_parked_by_one_batch_reaches_its_message_in_the_next(
    embedded: tuple[Any, Runtime], tmp_path: Path
) -> None:
    """A reaction indexed before its message is parked; the follower's kept listing of
    parked folds knows it, so the message's batch (the very next) applies it."""
    client, rt = embedded
    contact, wamid = "447700900800", "wamid.T" + secrets.token_hex(12)
    index = _index(tmp_path)
    follower = _follower(rt, rt.state, index, "folds")
    post_processed(client, rt, [Msg(contact, "egret warmup", TS)])
    assert follower.run_to_end() > 0  # the listing of parked folds is kept from here
    reaction = json.loads(body_for([Msg(contact, "unused", TS + 1)]))
    message = reaction["entry"][0]["changes"][0]["value"]["messages"][0]
    message.pop("text")
    message.update({"type": "reaction", "reaction": {"message_id": wamid, "emoji": "\U0001f44d"}})
    _posted(client, rt, reaction)
    assert follower.run_to_end() > 0
    original = json.loads(body_for([Msg(contact, "egret original words", TS)]))
    original["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = wamid
    _posted(client, rt, original)
    assert follower.run_to_end() > 0
    hits = index.search(SearchRequest(q="original", size=10)).hits
    assert len(hits) == 1
    assert [r.get("emoji") for r in hits[0].doc.get("reactions") or []] == ["\U0001f44d"], hits


class _Lists(_Counted):
    """Also counts ``list`` calls per prefix."""

    def __init__(self, inner: StateStore) -> None:
        super().__init__(inner)
        self.lists: Counter[str] = Counter()

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            self.lists[prefix] += 1
        return self.inner.list(prefix)


def test_a_kind_with_too_many_keys_is_read_per_subject_and_not_listed_again(
    embedded: tuple[Any, Runtime], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``_LIST_MAX`` keys a listing would cost more than it saves: the kind is read
    per subject (consent still reaches the documents) and not listed batch after batch."""
    monkeypatch.setattr(follower_module, "_LIST_MAX", 0)  # one key is already too many
    client, rt = embedded
    contact = "447700900900"
    state = _Lists(rt.state)
    index = _index(tmp_path)
    post_processed(client, rt, [Msg(contact, "STOP", TS)])
    # Another follower of the generation writes index/consent/many/<subject> ...
    assert _follower(rt, rt.state, index, "many").run_to_end() > 0
    follower = _follower(rt, state, index, "many")  # ... and this one goes on from there
    for i in range(2):  # two batches back to back, each meeting the subject
        post_processed(client, rt, [Msg(contact, f"plover words {i}", TS + 1 + i)])
        assert follower.catch_up() > 0
    # Each listed once: consent found too many (then read per subject), names none (kept).
    assert state.lists["index/consent/many/"] == 1, state.lists
    assert state.lists["index/names/many/"] == 1, state.lists
    docs = [h.doc for h in index.search(SearchRequest(q="plover", size=10)).hits]
    assert len(docs) == 2 and all(d.get("consent") == "opt_out" for d in docs), docs
