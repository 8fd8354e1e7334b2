"""The media loop thread and the Graph client built from settings.

Started by ``Runtime.start_workers()`` only when ``ARCHIVER_GRAPH_TOKEN`` is set: without
a token Meta serves no media, and the jobs wait in working state until one is set
(their 7-day clock keeps running, so a long wait ends in ``media_missing`` flags).
"""

from __future__ import annotations

import threading

import httpx

from archiver.errors import ArchiverError
from archiver.keys.store import KeyStore
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.media.worker import MediaWorker
from archiver.records.pseudonym import Pseudonymizer
from archiver.settings import Settings
from archiver.store.port import ObjectStore, StateStore
from archiver.whatsapp.graph import GraphClient

log = get_logger("archiver.media")


def build_graph(settings: Settings) -> GraphClient | None:
    """A Graph client from ``ARCHIVER_GRAPH_*``; None when no token is configured."""
    token = settings.graph_token.get_secret_value()
    if not token:
        return None
    http = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0), follow_redirects=False)
    return GraphClient(
        http, token=token, base_url=settings.graph_base_url, version=settings.graph_version
    )


class MediaLoop:
    """Runs ``MediaWorker.run_once`` every ``interval`` seconds (sooner after ``wake()``)."""

    def __init__(self, worker: MediaWorker, *, interval: float = 2.0) -> None:
        self.worker = worker
        self.interval = interval
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="media", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._nudge.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.interval
        while not self._stop.is_set():
            wait = self.interval
            try:
                self.worker.run_once()
                self.runs += 1
                self.last_error = None
                backoff = self.interval
            except ArchiverError as exc:  # a store outage: back off, the jobs stay put
                self.last_error = exc.code
                log.warning("media_backoff", error_code=exc.code, seconds=backoff)
                wait, backoff = backoff, min(backoff * 2, 60.0)
            except Exception:  # a bug must not stop media capture for good
                self.last_error = "internal"
                log.exception("media_error")
                wait, backoff = backoff, min(backoff * 2, 60.0)
            self._nudge.wait(wait)
            self._nudge.clear()


def start_media_loop(
    *,
    objects: ObjectStore,
    state: StateStore,
    keys: KeyStore,
    log: LogAppender,
    pseudo: Pseudonymizer,
    graph: GraphClient | None,
) -> MediaLoop | None:
    """Build and start the loop (``Runtime.start_workers``) when there is a Graph client."""
    if graph is None:
        return None
    loop = MediaLoop(
        MediaWorker(
            objects=objects, state=state, keys=keys, log_appender=log, pseudo=pseudo,
            graph=graph,
        )
    )
    loop.start()
    return loop
