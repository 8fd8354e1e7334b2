"""The processing and indexing loops, as threads of an app process or of ``archiver worker``.

Processing takes batches as capture hands them over (low latency) and also sweeps the
store for batches nobody processed (after a crash or a restart). Indexing follows the
log. Both back off when a backend is down and resume by themselves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from archiver.errors import ArchiverError
from archiver.indexing.follower import IndexFollower
from archiver.ingest.batch_status import BatchResult
from archiver.ingest.capture import CapturedBatch
from archiver.ingest.processor import Processor
from archiver.logs import get_logger
from search.errors import SearchError

log = get_logger("archiver.workers")


class _Loop:
    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        pass

    def _run(self) -> None:
        raise NotImplementedError


class ProcessingLoop(_Loop):
    """Batches go to a queue (from capture at once, and from a periodic sweep of the
    store); several workers, each with its own ``Processor``, take them from it. A
    batch's per-batch cost is mostly waiting on the store, so batches overlap well; the
    claim in working state keeps two workers (or replicas) off the same batch."""

    def __init__(
        self,
        processors: Sequence[Processor],
        *,
        sweep_every: float = 30.0,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        super().__init__("processing")
        self.processors = list(processors)
        self.sweep_every = sweep_every
        self.after_batch = after_batch
        self._queue: queue.Queue[tuple[str, str | None] | None] = queue.Queue()
        self._queued: set[str] = set()  # waiting or in progress: never queued twice
        self._queued_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.processed = 0

    def _enqueue(self, key: str, version_id: str | None) -> None:
        with self._queued_lock:
            if key in self._queued:
                return
            self._queued.add(key)
        self._queue.put((key, version_id))

    def submit(self, batch: CapturedBatch) -> None:
        self._enqueue(batch.key, batch.version_id)

    def backlog(self) -> int:
        """Raw batches queued and not taken by a worker yet (capture waits longer for
        company while there are: ``CaptureService.backlog``)."""
        return self._queue.qsize()

    def wake(self) -> None:
        for _ in self.processors:
            self._queue.put(None)

    def start(self) -> None:
        super().start()
        for n, processor in enumerate(self.processors):
            thread = threading.Thread(
                target=self._work, args=(processor,), name=f"processing-{n}", daemon=True
            )
            thread.start()
            self._workers.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        for thread in self._workers:
            thread.join(timeout)

    def _run(self) -> None:
        """The sweep: queue every raw batch not done yet (after a crash or a restart)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with self._queued_lock:
                    known = frozenset(self._queued)
                for key in self.processors[0].pending_batches(known):
                    self._enqueue(key, None)
                stuck = self.processors[0].stuck_batches()
                if stuck:  # never dropped by age: an alert until someone looks
                    log.error("batches_stuck", count=len(stuck),
                              oldest=stuck[0]["batch_id"], status=stuck[0]["status"])
                backoff = 0.5
                self._stop.wait(self.sweep_every)
            except Exception as exc:  # a bug must not stop capture processing for good
                backoff = self._back_off(exc, "sweep", backoff)

    def _back_off(self, exc: Exception, what: str, seconds: float) -> float:
        """Log ``exc`` (a known failure briefly, a bug with its traceback), wait, and return
        the next, doubled wait (at most 30 s)."""
        if isinstance(exc, ArchiverError):
            log.warning(f"{what}_backoff", error_code=exc.code, seconds=seconds)
        else:
            log.exception(f"{what}_error")
        self._stop.wait(seconds)
        return min(seconds * 2, 30.0)

    def _work(self, processor: Processor) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                continue
            try:
                outcome = processor.process(*item)
                with self._queued_lock:
                    self.processed += outcome.status == BatchResult.DONE
                backoff = 0.5
                if self.after_batch is not None:
                    self.after_batch()
            except Exception as exc:  # left for the next sweep to queue again
                backoff = self._back_off(exc, "processing", backoff)
            finally:
                with self._queued_lock:
                    self._queued.discard(item[0])


class IndexingLoop(_Loop):
    def __init__(self, follower: IndexFollower, *, idle_wait: float = 0.5) -> None:
        super().__init__("indexing")
        self.follower = follower
        self.idle_wait = idle_wait
        self._nudge = threading.Event()
        self.last_error: str | None = None

    def wake(self) -> None:
        self._nudge.set()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                # While behind, searchable at the index's next refresh (~1 s), not at
                # each bulk's end; refreshed when caught up (``IndexFollower.catch_up``).
                consumed = self.follower.catch_up(visible=False)
                self.last_error = None
                backoff = 0.5
                if consumed == 0:
                    self._nudge.wait(self.idle_wait)
                    self._nudge.clear()
            except (ArchiverError, SearchError) as exc:
                self.last_error = getattr(exc, "code", "error")
                log.warning("indexing_backoff", error_code=self.last_error, seconds=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                log.exception("indexing_error")
                self.last_error = "internal"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
