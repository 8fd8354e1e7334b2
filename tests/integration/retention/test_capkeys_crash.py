"""Issue 15 finding 6: a crash between deleting a raw batch and deleting its wrapped capture
keys (``capkeys/<batch>``) must not leave the keys forever: the next run finishes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from archiver.retention.disposition import DispositionJob
from archiver.runtime import Runtime
from archiver.store.port import StateStore
from tests.support.disposition import SimulatedCrash, archive, records_at, time_travel
from tests.support.retention import Msg, deliver, now

pytestmark = pytest.mark.integration


class CrashOnCapkeys:
    """The real state store, except that the first delete of ``capkeys/…`` crashes."""

    def __init__(self, inner: StateStore) -> None:
        self.inner, self.crashed = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        if key.startswith("capkeys/") and not self.crashed:
            self.crashed = True
            raise SimulatedCrash(f"crash before deleting {key}")
        self.inner.delete(key, if_match=if_match)


def _job(rt: Runtime, state: Any) -> DispositionJob:
    base = rt.retention.disposition
    return DispositionJob(
        objects=rt.objects, state=state, log=rt.log, index=rt.index, policy=rt.policy,
        holds=base.holds, lock_mode=base.lock_mode, log_retention_days=base.log_retention_days,
    )  # fmt: skip


def test_capture_keys_of_a_batch_deleted_before_a_crash_go_on_the_next_run(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with archive(request, tmp_path, "embedded", raw_retention_days=1) as (client, rt):
        t0 = now()
        deliver(client, rt, [Msg("447700900061", "short lived", t0)])
        (record,) = records_at(rt, t0)
        assert record.raw is not None
        raw_key = record.raw[0]
        capkeys = "capkeys/" + raw_key.rsplit("/", 1)[-1]
        assert rt.state.get(capkeys) is not None

        crashing = CrashOnCapkeys(rt.state)
        first = _job(rt, crashing)
        time_travel(rt, first, days=3)
        with pytest.raises(SimulatedCrash):
            first.run()
        assert crashing.crashed
        assert list(rt.objects.list_versions(raw_key)) == []  # the batch is gone ...
        assert rt.state.get(capkeys) is not None  # ... and its keys are left behind

        redo = _job(rt, rt.state)
        time_travel(rt, redo, days=3)
        redo.run()
        assert rt.state.get(capkeys) is None
