"""Records just written, kept in memory for the log's readers in the same process.

The processing worker writes a record and, a moment later, the readers that follow the
log in the same process read it back: the index follower to index it, the Coexistence
view to note its number's activity. That was one GET per record and reader that the
store had to serve while it is busiest (the view's alone was a whole GET per record in
``bench/pipeline.py``). The processor leaves the bytes here; each reader takes them if
the log entry's SHA-256 matches (so a cached copy can never stand for other bytes than
the log names), and reads the store otherwise — after a restart, in another process, or
once the entry has been evicted. An entry goes when every reader has taken it, or, oldest
first, when the cache is over its count or its bytes (a reader that runs elsewhere never
takes its share). Thread-safe. ``Runtime.open`` makes one per runtime and hands it to the
processor and the readers (no process-wide registry).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable

DEFAULT_CAPACITY = 10_000  # a few seconds of a busy log (records are ~1.5-3 kB)
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
INDEX_READER = "index"
COEXISTENCE_READER = "coexistence"  # archiver.coexistence's view of each number


class RecentObjects:
    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        readers: Iterable[str] = (INDEX_READER,),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.readers = frozenset(readers)
        # (key, version) -> (body, the readers that have not taken it yet)
        self._items: OrderedDict[tuple[str, str], tuple[bytes, set[str]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: str, version_id: str, body: bytes) -> None:
        with self._lock:
            old = self._items.pop((key, version_id), None)
            if old is not None:
                self._bytes -= len(old[0])
            self._items[(key, version_id)] = (body, set(self.readers))
            self._bytes += len(body)
            while self._items and (
                len(self._items) > self.capacity or self._bytes > self.max_bytes
            ):
                _, (gone, _readers) = self._items.popitem(last=False)
                self._bytes -= len(gone)

    def take(
        self, key: str, version_id: str, sha256: str | None, reader: str = INDEX_READER
    ) -> bytes | None:
        """The cached bytes of that version if they hash to ``sha256``, else None. Each
        reader gets them once; the entry goes when the last reader has taken it."""
        with self._lock:
            item = self._items.get((key, version_id))
            if item is None or reader not in item[1]:
                return None
            body, waiting = item
            waiting.discard(reader)
            if not waiting:
                del self._items[(key, version_id)]
                self._bytes -= len(body)
        if sha256 is None or hashlib.sha256(body).hexdigest() != sha256:
            return None
        return body

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes
