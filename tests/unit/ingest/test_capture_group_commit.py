"""Capture's group commit waits longer for company while processing is behind (issue 10):
raw batches of one or two deliveries at a trickle cost processing most of its time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from archiver.ingest.capture import CaptureService
from archiver.ingest.rawbatch import Delivery
from archiver.runtime import Runtime
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
