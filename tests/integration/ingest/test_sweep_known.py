"""The processing sweep reads no state of batches its loop already has queued (issue 10):
during a backlog every 30-second sweep read one ``proc/`` value per waiting batch (1.15
reads per record in the open-loop bench) to queue nothing new. Batches it does not know
are still found, and a done batch's leftover pending entry is still tidied."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from archiver.ingest.rawbatch import Delivery
from archiver.keyspace import PENDING_PREFIX, PROC_PREFIX
from archiver.runtime import Runtime
from archiver.store.port import StateStore, StateValue
from tests.conftest import shared_dir


class _ProcReads:
    """The processor's real state store, counting reads of batch states."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads: Counter[str] = Counter()

    def get(self, key: str) -> StateValue | None:
        if key.startswith(PROC_PREFIX):
            self.reads[key] += 1
        return self.inner.get(key)

    def put(
        self, key: str, value: bytes, *, if_match: str | None = None, if_absent: bool = False
    ) -> str:
        return self.inner.put(key, value, if_match=if_match, if_absent=if_absent)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)


def _capture(rt: Runtime, n: int) -> str:
    body = (shared_dir() / "fixtures" / "whatsapp" / "messages_text.json").read_bytes()
    body = body.replace(b"wamid.", f"wamid.sweep{n}".encode(), 1)
    now = datetime.now(UTC).isoformat()
    return rt.capture_writer.write([Delivery(body, now, "sha256=x", 0, None)]).key


def test_the_sweep_skips_known_batches_without_reading_them(runtime: Runtime) -> None:
    rt = runtime
    keys = [_capture(rt, n) for n in range(4)]
    # Nothing known: every waiting batch, as before (and the pending index's one-time
    # scan of ``raw/``, which reads every batch's state, is done).
    assert rt.processor.pending_batches() == keys
    counted = _ProcReads(rt.processor.state)
    rt.processor.state = counted  # type: ignore[assignment]
    try:
        # All four are queued already: none is read, none is returned.
        assert rt.processor.pending_batches(frozenset(keys)) == []
        assert sum(counted.reads.values()) == 0
        # Two are known: only the other two are read, and returned oldest first.
        assert rt.processor.pending_batches(frozenset(keys[:2])) == keys[2:]
        assert set(counted.reads) == {PROC_PREFIX + k.rsplit("/", 1)[-1] for k in keys[2:]}
        # Nothing known: all four read again.
        assert rt.processor.pending_batches() == keys
        assert sum(counted.reads.values()) == 2 + 4
    finally:
        rt.processor.state = counted.inner  # type: ignore[assignment]

    # Once it leaves the caller's queue, a done batch's leftover pending entry is tidied.
    done_id = keys[0].rsplit("/", 1)[-1]
    rt.state.put(PROC_PREFIX + done_id, json.dumps({"status": "done", "leaves": []}).encode())
    assert rt.processor.pending_batches(frozenset(keys[:1])) == keys[1:]
    assert rt.state.get(PENDING_PREFIX + done_id) is not None  # known: left alone
    assert rt.processor.pending_batches() == keys[1:]
    assert rt.state.get(PENDING_PREFIX + done_id) is None
