"""Durable raw capture with group commit.

``CaptureService.capture`` returns only after the delivery's bytes are in the evidence
store under retention *and* its capture key is in the working-state store: that is
the moment a webhook may be answered 200. Deliveries arriving together share one
object (one PUT), which is how capture keeps up with Meta's bursts on a small
machine. A store failure fails every delivery of the batch, so each is answered 503
and Meta retries it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from archiver.ingest.rawbatch import Delivery, seal_batch
from archiver.keys.envelope import KeyEncryptionKey
from archiver.keyspace import CAPTURE_KEYS_PREFIX, PENDING_PREFIX, raw_key
from archiver.logs import get_logger
from archiver.metering import stage
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore

log = get_logger("archiver.capture")

# Working state under PENDING_PREFIX: one entry per captured batch not processed yet (the
# durable pending index the processor sweeps instead of scanning days; removed when done).


@dataclass(frozen=True, slots=True)
class CapturedBatch:
    batch_id: str
    key: str
    version_id: str
    sha256: str
    size: int
    retain_until: datetime
    count: int


@dataclass(frozen=True, slots=True)
class CaptureReceipt:
    batch: CapturedBatch
    index: int


def new_batch_id(now: datetime) -> str:
    """Sortable by time, unique across replicas."""
    return now.strftime("%Y%m%dT%H%M%S.%f") + "Z-" + secrets.token_hex(6)


def batch_id_of(key: str) -> str:
    return key.rsplit("/", 1)[-1]


class CaptureWriter:
    """The synchronous half: seal, write keys and object, return the batch."""

    def __init__(
        self,
        objects: ObjectStore,
        state: StateStore,
        kek: KeyEncryptionKey,
        *,
        retention_days: int,
        lock_mode: LockMode,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        executor: ThreadPoolExecutor | None = None,
        raw_policy: Callable[[datetime], datetime | None] | None = None,
    ) -> None:
        self.objects = objects
        self.state = state
        self.kek = kek
        self.retention_days = retention_days
        self.lock_mode = lock_mode
        self.clock = clock
        self._executor = executor
        self.raw_policy = raw_policy

    def retain_until(self, now: datetime) -> datetime:
        """A new batch's retain-until: the ``retention_days`` floor (the house period of raw
        captures), lengthened to what an obligation on ``raw_capture`` requires
        (``raw_policy``: the engine's answer, None when no obligation applies). The
        processor later extends it to the longest record parsed from the batch."""
        floor = now + timedelta(days=self.retention_days)
        required = self.raw_policy(now) if self.raw_policy is not None else None
        return floor if required is None else max(floor, required)

    def write(self, deliveries: Sequence[Delivery]) -> CapturedBatch:
        with stage("capture_write"):
            return self._write(deliveries)

    def _write(self, deliveries: Sequence[Delivery]) -> CapturedBatch:
        now = self.clock()
        batch_id = new_batch_id(now)
        keys = [os.urandom(32) for _ in deliveries]
        data, _slots = seal_batch(batch_id, deliveries, keys)
        key_doc = {
            "batch_id": batch_id,
            "kek_id": self.kek.kek_id,
            "keys": {
                str(i): base64.b64encode(self.kek.wrap(k)).decode() for i, k in enumerate(keys)
            },
        }
        retain_until = self.retain_until(now)
        key_bytes = json.dumps(key_doc, sort_keys=True).encode()
        object_key = raw_key(batch_id)
        pending = json.dumps({"key": object_key, "since": now.isoformat()}).encode()
        # The writes are independent: run them side by side to keep the latency of one.
        # The pending entry lands before the answer, so no acknowledged batch can be
        # missed by the processor's sweep, however old it gets.
        if self._executor is not None:
            keys_done = self._executor.submit(
                self.state.put, CAPTURE_KEYS_PREFIX + batch_id, key_bytes, if_absent=True
            )
            pending_done = self._executor.submit(
                self.state.put, PENDING_PREFIX + batch_id, pending, if_absent=True
            )
            put = self.objects.put(
                object_key,
                data,
                retention=Retention(self.lock_mode, retain_until),
                content_type="application/x-wa-raw-batch",
                fresh=True,
            )
            keys_done.result()
            pending_done.result()
        else:
            self.state.put(CAPTURE_KEYS_PREFIX + batch_id, key_bytes, if_absent=True)
            self.state.put(PENDING_PREFIX + batch_id, pending, if_absent=True)
            put = self.objects.put(
                object_key,
                data,
                retention=Retention(self.lock_mode, retain_until),
                content_type="application/x-wa-raw-batch",
                fresh=True,
            )
        return CapturedBatch(
            batch_id=batch_id,
            key=put.key,
            version_id=put.version_id,
            sha256=put.sha256,
            size=put.size,
            retain_until=retain_until,
            count=len(deliveries),
        )


class CaptureService:
    """The asynchronous half: gather deliveries for a few ms, write them as one batch."""

    def __init__(
        self,
        writer: CaptureWriter,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.004,
        max_inflight: int = 8,
        busy_wait_s: float | None = None,
        on_batch: Callable[[CapturedBatch], None] | None = None,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        for name, wait in (("max_wait_s", max_wait_s), ("busy_wait_s", busy_wait_s)):
            # An endless wait would hold a delivery until max_batch others came.
            if wait is not None and not (math.isfinite(wait) and wait >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {wait}")
        self.writer = writer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        # Group commit that adapts to its consumer, like PostgreSQL's commit_delay (which
        # waits only when other transactions are active): while ``backlog()`` says raw
        # batches are waiting for processing, a write waits longer for company. Each raw
        # batch costs processing a fixed set of round trips (claim, read, keys, log, done),
        # so at a trickle of 100 deliveries/s batches of 1-2 spent most of processing's
        # time on them and the backlog never drained.
        self.busy_wait_s = max_wait_s if busy_wait_s is None else max(busy_wait_s, max_wait_s)
        self.on_batch = on_batch
        self.backlog = backlog
        self._pool = ThreadPoolExecutor(max_workers=max_inflight * 2, thread_name_prefix="capture")
        writer._executor = self._pool
        self._slots = asyncio.Semaphore(max_inflight)
        self._queue: asyncio.Queue[tuple[Delivery, asyncio.Future[CaptureReceipt]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="capture-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        self._pool.shutdown(wait=True)

    async def capture(self, delivery: Delivery) -> CaptureReceipt:
        if self._queue is None:
            raise RuntimeError("CaptureService.start() was not awaited")
        future: asyncio.Future[CaptureReceipt] = asyncio.get_running_loop().create_future()
        await self._queue.put((delivery, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            await self._slots.acquire()
            try:
                await self._gather(loop, batch)
            except Exception:
                # This one task serves every delivery: had it died, each later delivery would
                # wait for an answer forever. The deliveries in hand are written as they are.
                log.exception("capture_batcher_error", deliveries=len(batch))
            task = asyncio.create_task(self._flush(batch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _gather(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Delivery, asyncio.Future[CaptureReceipt]]],
    ) -> None:
        # While we waited for a writer slot, more deliveries queued: take them all.
        assert self._queue is not None
        deadline = loop.time() + self._wait_s()
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break

    def _wait_s(self) -> float:
        """The wait for company: the busy one while ``backlog()`` says processing is
        behind. A failing ``backlog`` (another part's bug) costs the short wait, never
        capture itself."""
        try:
            behind = self.backlog is not None and self.backlog() > 0
        except Exception:
            log.exception("capture_backlog_unknown")
            behind = False
        return self.busy_wait_s if behind else self.max_wait_s

    async def _flush(self, batch: list[tuple[Delivery, asyncio.Future[CaptureReceipt]]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            written = await loop.run_in_executor(
                self._pool, self.writer.write, [d for d, _ in batch]
            )
        except Exception as exc:  # every delivery of a failed batch is answered 503
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._slots.release()
        for index, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(CaptureReceipt(batch=written, index=index))
        if self.on_batch is not None:
            self.on_batch(written)
