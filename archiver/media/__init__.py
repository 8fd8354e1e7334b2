"""Media: download WhatsApp media from the Graph API, store it per data subject, link it.

Public API::

    MediaWorker(objects=, state=, keys=, log=, pseudo=, graph=, clock=, owner=)
        .run_once(now) -> RunReport
    MediaLoop(worker, interval=2.0)            a thread; start() / stop() / wake()
    build_graph(settings) -> GraphClient | None
"""

from archiver.keyspace import MEDIA_OBJECT_PREFIX, media_object_key
from archiver.media.worker import MediaWorker, RunReport

__all__ = ["MEDIA_OBJECT_PREFIX", "MediaWorker", "RunReport", "media_object_key"]
