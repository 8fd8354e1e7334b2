"""Capture's group commit waits longer for company while processing is behind (issue 10):
raw batches of one or two deliveries at a trickle cost processing most of its time."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from archiver.ingest.capture import CaptureService
from archiver.ingest.rawbatch import Delivery
from archiver.runtime import Runtime
from archiver.settings import Settings
from tests.support.apps import embedded_settings


def _delivery(n: int) -> Delivery:
    return Delivery(
        body=b'{"n": %d}' % n, received_at=datetime.now(UTC).isoformat(),
        signature_header="sha256=00", secret_index=0, content_type="application/json",
    )  # fmt: skip


async def _batch_sizes(service: CaptureService, spacing_s: float) -> list[int]:
    await service.start()
    try:
        sent = []
        for n in range(3):
            sent.append(asyncio.create_task(service.capture(_delivery(n))))
            await asyncio.sleep(spacing_s)
        receipts = await asyncio.gather(*sent)
    finally:
        await service.stop()
    return [r.batch.count for r in receipts]


async def _two_captures(service: CaptureService) -> list[int]:
    """Two deliveries one after the other, each answered within 3 s: their batch sizes."""
    await service.start()
    try:
        first = await asyncio.wait_for(service.capture(_delivery(1)), 3.0)
        second = await asyncio.wait_for(service.capture(_delivery(2)), 3.0)
    finally:
        await service.stop()
    return [first.batch.count, second.batch.count]


def test_a_backlog_widens_the_wait_and_no_backlog_keeps_it_short(tmp_path: Path) -> None:
    runtime = Runtime.open(embedded_settings(tmp_path / "data"))
    try:
        behind = [0]

        def service() -> CaptureService:
            return CaptureService(
                runtime.capture_writer, max_wait_s=0.002, busy_wait_s=1.0, max_inflight=1,
                backlog=lambda: behind[0],
            )  # fmt: skip

        # Nothing waits for processing: each delivery 150 ms apart goes out on its own.
        assert asyncio.run(_batch_sizes(service(), 0.15)) == [1, 1, 1]
        # Raw batches wait for a worker: the three share one write.
        behind[0] = 2
        assert asyncio.run(_batch_sizes(service(), 0.15)) == [3, 3, 3]
    finally:
        runtime.close()


def test_the_busy_wait_is_never_shorter_than_the_idle_one() -> None:
    service = CaptureService(SimpleNamespace(), max_wait_s=0.02, busy_wait_s=0.001)  # type: ignore[arg-type]
    assert service.busy_wait_s == 0.02
    service.backlog = lambda: 1
    assert service._wait_s() == 0.02


def test_a_failing_backlog_costs_the_short_wait_not_capture(tmp_path: Path) -> None:
    """``backlog`` is another part's code running inside the one batcher task: had it
    raised there, the task died and every later delivery waited for its answer forever."""
    runtime = Runtime.open(embedded_settings(tmp_path / "data"))
    try:
        calls = [0]

        def broken() -> int:
            calls[0] += 1
            raise RuntimeError("processing loop gone")

        service = CaptureService(
            runtime.capture_writer, max_wait_s=0.002, busy_wait_s=5.0, max_inflight=1,
            backlog=broken,
        )  # fmt: skip
        # Each answered at once (not after the busy 5 s: the backlog is unknown).
        assert asyncio.run(_two_captures(service)) == [1, 1]
        assert calls[0] == 2
    finally:
        runtime.close()


def test_a_bug_while_gathering_a_batch_does_not_stall_capture(tmp_path: Path) -> None:
    """Whatever fails while the batcher gathers company, the deliveries in hand are
    written and the next ones are served."""
    runtime = Runtime.open(embedded_settings(tmp_path / "data"))
    try:
        service = CaptureService(runtime.capture_writer, max_wait_s=0.002, max_inflight=1)
        failures = [1]

        def wait_s() -> float:
            if failures[0]:
                failures[0] -= 1
                raise RuntimeError("bug")
            return 0.002

        service._wait_s = wait_s  # type: ignore[method-assign]

        assert asyncio.run(_two_captures(service)) == [1, 1]
    finally:
        runtime.close()


@pytest.mark.parametrize("name", ["CAPTURE_BATCH_WAIT_MS", "CAPTURE_BATCH_BUSY_WAIT_MS"])
@pytest.mark.parametrize("value", ["inf", "1e309", "-1", "nan", "60000"])
def test_a_wait_for_company_is_finite_and_bounded(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inf`` passed ``ge=0``: while processing was behind a delivery then waited for its
    answer until capture_batch_max others came (forever at a trickle)."""
    monkeypatch.setenv(f"ARCHIVER_{name}", "1000")  # the bound itself is fine
    assert getattr(Settings(), name.lower()) == 1000.0
    monkeypatch.setenv(f"ARCHIVER_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_the_service_refuses_an_endless_wait() -> None:
    for kwargs in ({"max_wait_s": math.inf}, {"busy_wait_s": math.inf},
                   {"busy_wait_s": math.nan}, {"max_wait_s": -0.1}):  # fmt: skip
        with pytest.raises(ValueError, match="finite"):
            CaptureService(SimpleNamespace(), **kwargs)  # type: ignore[arg-type]
