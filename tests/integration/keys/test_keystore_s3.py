"""The key store on the real S3 working-state bucket (MinIO): the same behaviours as the
SQLite unit tests, plus proof that a shredded key's bytes are gone from the bucket."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from archiver.keys import KeyProtected, KeyShredded, KeyStore, LocalKek, decrypt, encrypt
from archiver.store._s3common import make_client
from archiver.store.state_s3 import S3StateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def state(s3_endpoint: Any) -> Iterator[S3StateStore]:
    client = make_client(s3_endpoint.endpoint, s3_endpoint.access_key, s3_endpoint.secret_key,
                         secure=False)
    bucket = f"keys-{uuid.uuid4().hex[:12]}"
    s = S3StateStore(client, bucket)
    s.ensure_bucket()
    yield s
    for key in list(s.list("")):
        s.delete(key)
    client.remove_bucket(bucket)


def no_guard(_s: str) -> None:
    return None


def test_subject_and_capture_keys_on_s3(state: S3StateStore) -> None:
    kek = LocalKek.generate()
    store = KeyStore(state, kek)
    k1, ev = store.get_or_create("s-one")
    assert ev is not None and store.get_or_create("s-one")[0] == k1
    k2, _ = store.get_or_create("s-two")
    cap, _ = store.create_capture_key("cap-1", ["s-one", "s-two"])
    rec2 = encrypt(k2, b"two", b"r2")
    wrapped_before = json.loads(state.get(f"keys/dk/{k1.key_id}").value)["wrapped"]  # type: ignore[union-attr]
    assert base64.b64decode(wrapped_before) != k1.secret

    store.protect("s-two", "hold:case-1")
    with pytest.raises(KeyProtected):
        store.shred("s-one", guard=no_guard)  # its capture is shared with a held subject
    store.unprotect("s-two", "hold:case-1")

    events = store.shred("s-one", guard=no_guard)
    assert {e["key_id"] for e in events} == {k1.key_id, cap.key_id}
    for kid in (k1.key_id, cap.key_id):
        stone = json.loads(state.get(f"keys/dk/{kid}").value)  # type: ignore[union-attr]
        assert "wrapped" not in stone and stone["shredded_at"]
    assert not any(wrapped_before in state.get(k).value.decode()  # type: ignore[union-attr]
                   for k in state.list(""))
    with pytest.raises(KeyShredded):
        store.get_capture_key(cap.key_id)
    assert decrypt(store.get(k2.key_id), rec2, b"r2") == b"two"

    new = LocalKek.generate()
    assert store.rewrap_all(new)["count"] == 1
    assert KeyStore(state, new).get(k2.key_id) == k2
