"""KeyStore on the SQLite StateStore: subject keys, capture keys, protection, shredding,
KEK rotation."""

from __future__ import annotations

import json

import pytest

from archiver.keys import (
    KekError,
    KeyNotFound,
    KeyProtected,
    KeyShredded,
    KeyStore,
    LocalKek,
    decrypt,
    encrypt,
)
from archiver.store.state_sqlite import SqliteStateStore

S1, S2, S3 = "subj-aaaa", "subj-bbbb", "subj-cccc"


def no_guard(_subject: str) -> None:
    return None


def test_get_or_create_is_stable_and_logged(store: KeyStore) -> None:
    dk, ev = store.get_or_create(S1)
    assert ev == {"kind": "key:created", "time": "2026-01-02T03:04:05+00:00",
                  "subject": S1, "key_id": dk.key_id}
    again, ev2 = store.get_or_create(S1)
    assert again == dk and ev2 is None
    assert store.get(dk.key_id) == dk
    assert store.get_or_create(S2)[0].key_id != dk.key_id


def test_the_creator_gets_the_creation_event_again(store: KeyStore) -> None:
    # A batch that created a key and crashed before logging it asks again on its retry.
    dk, first = store.get_or_create(S1, creator="batch-1")
    assert first is not None
    again, replay = store.get_or_create(S1, creator="batch-1")
    assert again == dk and replay is not None
    assert (replay["kind"], replay["subject"], replay["key_id"]) == ("key:created", S1, dk.key_id)
    assert store.get_or_create(S1, creator="batch-2")[1] is None  # another batch: no event
    assert store.get_or_create(S1)[1] is None


def test_state_holds_only_wrapped_keys(store: KeyStore, state: SqliteStateStore) -> None:
    dk, _ = store.get_or_create(S1)
    got = state.get(f"keys/dk/{dk.key_id}")
    assert got is not None and dk.secret not in got.value
    assert json.loads(got.value)["kind"] == "subject"


def test_shredded_key_raises(store: KeyStore, state: SqliteStateStore) -> None:
    dk, _ = store.get_or_create(S1)
    blob = encrypt(dk, b"hello", b"rec")
    events = store.shred(S1, guard=no_guard)
    assert [(e["kind"], e["key_id"]) for e in events] == [("key:shredded", dk.key_id)]
    with pytest.raises(KeyShredded):
        store.get(dk.key_id)
    raw = state.get(f"keys/dk/{dk.key_id}")
    assert raw is not None and "wrapped" not in json.loads(raw.value)
    # a returning subject gets a fresh key; old content stays unreadable
    fresh, ev = store.get_or_create(S1)
    assert fresh.key_id != dk.key_id and ev is not None
    with pytest.raises(KeyShredded):
        decrypt(store.get(dk.key_id), blob, b"rec")


def test_unknown_key_and_subject(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound):
        store.get("nope")
    with pytest.raises(KeyNotFound):
        store.shred("ghost", guard=no_guard)
    with pytest.raises(ValueError, match="pseudonym"):
        store.get_or_create("+44 7700 900000")


def test_guard_refusal_destroys_nothing(store: KeyStore) -> None:
    dk, _ = store.get_or_create(S1)

    def guard(subject: str) -> None:
        raise RuntimeError(f"hold on {subject}")

    with pytest.raises(RuntimeError, match="hold on subj-aaaa"):
        store.shred(S1, guard=guard)
    assert store.get(dk.key_id) == dk


def test_protected_key_cannot_be_shredded(store: KeyStore) -> None:
    dk, _ = store.get_or_create(S1)
    ev = store.protect(S1, "hold:case-7")
    assert ev["kind"] == "key:protected" and ev["reason"] == "hold:case-7"
    store.protect(S1, "obligation:finra_4511")
    with pytest.raises(KeyProtected, match="hold:case-7"):
        store.shred(S1, guard=no_guard)
    store.unprotect(S1, "hold:case-7")
    with pytest.raises(KeyProtected, match="finra_4511"):
        store.shred(S1, guard=no_guard)
    assert store.get(dk.key_id) == dk
    assert store.unprotect(S1, "obligation:finra_4511")["kind"] == "key:unprotected"
    with pytest.raises(KeyNotFound):
        store.unprotect(S1, "never-set")
    store.shred(S1, guard=no_guard)
    with pytest.raises(KeyShredded):
        store.get(dk.key_id)


def test_protect_before_any_key(store: KeyStore) -> None:
    store.protect(S3, "hold:case-1")
    dk, ev = store.get_or_create(S3)
    assert ev is not None
    assert store.protections(S3) == {"hold:case-1": "2026-01-02T03:04:05+00:00"}
    with pytest.raises(KeyProtected):
        store.shred(S3, guard=no_guard)
    assert store.get(dk.key_id) == dk


def test_capture_keys(store: KeyStore) -> None:
    k1, _ = store.get_or_create(S1)
    k2, _ = store.get_or_create(S2)
    cap, events = store.create_capture_key("cap-001", [S1, S2])
    assert events[0]["kind"] == "key:capture_created"
    assert events[0]["subjects"] == [S1, S2]
    only2, _ = store.create_capture_key("cap-002", [S2])
    raw_shared = encrypt(cap, b'{"entry": [...]}', b"cap-001")
    raw_other = encrypt(only2, b"{}", b"cap-002")
    rec1, rec2 = encrypt(k1, b"msg of S1"), encrypt(k2, b"msg of S2")
    assert store.capture_keys_of(S1) == [cap.key_id]
    assert sorted(store.capture_keys_of(S2)) == sorted([cap.key_id, only2.key_id])
    assert store.get_capture_key(cap.key_id) == cap
    with pytest.raises(KeyNotFound):
        store.get_capture_key(k1.key_id)  # a subject key is not a capture key

    events = store.shred(S1, guard=no_guard)
    assert {(e["key_id"], e["kind_of_key"]) for e in events} == {
        (cap.key_id, "capture"), (k1.key_id, "subject")}
    # the raw delivery that mentioned S1 is unreadable for everyone...
    with pytest.raises(KeyShredded):
        store.get_capture_key(cap.key_id)
    with pytest.raises(KeyShredded):
        store.get(k1.key_id)
    # ...its grants are gone for both subjects...
    assert store.capture_keys_of(S1) == []
    assert store.capture_keys_of(S2) == [only2.key_id]
    # ...while S2's records and S2-only captures stay readable
    assert decrypt(store.get(k2.key_id), rec2) == b"msg of S2"
    assert decrypt(store.get_capture_key(only2.key_id), raw_other, b"cap-002") == b"{}"
    assert raw_shared and rec1  # ciphertexts remain, keys do not


def test_capture_shared_with_protected_subject_blocks_shred(store: KeyStore) -> None:
    k1, _ = store.get_or_create(S1)
    cap, _ = store.create_capture_key("cap-009", [S1, S2])
    store.protect(S2, "hold:case-9")
    with pytest.raises(KeyProtected, match="shared with protected subject subj-bbbb"):
        store.shred(S1, guard=no_guard)
    assert store.get(k1.key_id) == k1 and store.get_capture_key(cap.key_id) == cap


def test_subject_with_only_captures_can_be_erased(store: KeyStore) -> None:
    cap, _ = store.create_capture_key("cap-010", [S3])
    events = store.shred(S3, guard=no_guard)
    assert [e["key_id"] for e in events] == [cap.key_id]


def test_kek_rotation_rewraps(state: SqliteStateStore, kek: LocalKek) -> None:
    store = KeyStore(state, kek)
    k1, _ = store.get_or_create(S1)
    cap, _ = store.create_capture_key("cap-1", [S1, S2])
    store.get_or_create(S2)
    store.shred(S2, guard=no_guard)  # tombstones are skipped
    new = LocalKek.generate()
    ev = store.rewrap_all(new)
    assert ev["kind"] == "key:rewrapped" and ev["count"] == 1  # k1 only; cap went with S2
    assert ev["from_kek_ids"] == [kek.kek_id] and ev["to_kek_id"] == new.kek_id
    assert store.rewrap_all(new)["count"] == 0  # resumable / idempotent
    # a store that only knows the new KEK reads everything; one with the old KEK cannot
    assert KeyStore(state, new).get(k1.key_id) == k1
    with pytest.raises(KekError, match="unknown KEK"):
        KeyStore(state, kek).get(k1.key_id)
    k3, _ = store.get_or_create(S3)  # new keys are wrapped by the new KEK
    assert KeyStore(state, new).get(k3.key_id) == k3
    with pytest.raises(KeyShredded):
        KeyStore(state, new).get(cap.key_id)


def test_rotation_needs_old_kek_to_read(state: SqliteStateStore, kek: LocalKek) -> None:
    KeyStore(state, kek).get_or_create(S1)
    with pytest.raises(KekError):
        KeyStore(state, LocalKek.generate()).rewrap_all(LocalKek.generate())
    # with the old KEK passed in, rotation works from a fresh process
    new = LocalKek.generate()
    assert KeyStore(state, new, old_keks=[kek]).rewrap_all(new)["count"] == 1


def test_concurrent_get_or_create_agrees(state: SqliteStateStore, kek: LocalKek) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = KeyStore(state, kek)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.get_or_create(S1), range(16)))
    assert len({dk.key_id for dk, _ in results}) == 1
    assert sum(ev is not None for _, ev in results) == 1
    assert len(list(state.list("keys/dk/"))) == 1  # losers removed their orphan keys
