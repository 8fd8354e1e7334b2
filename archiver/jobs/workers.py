"""The processing and indexing loops, as threads of an app process or of ``archiver worker``.

Processing takes batches as capture hands them over (low latency) and also sweeps the
store for batches nobody processed (after a crash or a restart). Indexing follows the
log. Both back off when a backend is down and resume by themselves.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from archiver.errors import ArchiverError
from archiver.indexing.follower import IndexFollower
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
    def __init__(
        self,
        processor: Processor,
        *,
        sweep_every: float = 30.0,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        super().__init__("processing")
        self.processor = processor
        self.sweep_every = sweep_every
        self.after_batch = after_batch
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.processed = 0

    def submit(self, batch: CapturedBatch) -> None:
        self._queue.put((batch.key, batch.version_id))

    def wake(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        next_sweep = 0.0
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    for outcome in self.processor.sweep():
                        self.processed += outcome.status == "done"
                    next_sweep = time.monotonic() + self.sweep_every
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    continue
                if item is None:
                    continue
                outcome = self.processor.process(*item)
                self.processed += outcome.status == "done"
                backoff = 0.5
                if self.after_batch is not None:
                    self.after_batch()
            except ArchiverError as exc:
                log.warning("processing_backoff", error_code=exc.code, seconds=backoff)
                next_sweep = 0.0  # whatever failed is picked up again by the sweep
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:  # a bug must not stop capture processing for good
                log.exception("processing_error")
                next_sweep = 0.0
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)


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
                consumed = self.follower.catch_up()
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
