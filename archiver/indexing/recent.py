"""Records just written, kept in memory for the index follower of the same process.

The processing worker writes a record and, a moment later, the follower of the same
process reads it back to index it: one GET per record that the store has to serve while
it is busiest. The processor leaves the bytes here; the follower takes them if the log
entry's SHA-256 matches (so a cached copy can never index other bytes than the log
names), and reads the store otherwise — after a restart, in another process, or once
the entry has been evicted. Bounded (oldest first out), thread-safe. ``Runtime.open``
makes one per runtime and hands it to both (no process-wide registry).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

DEFAULT_CAPACITY = 10_000  # a few seconds of a busy log (records are ~1.5-3 kB)


class RecentObjects:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, version_id: str, body: bytes) -> None:
        with self._lock:
            self._items[(key, version_id)] = body
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def take(self, key: str, version_id: str, sha256: str | None) -> bytes | None:
        """The cached bytes of that version if they hash to ``sha256`` (then forgotten:
        the follower reads each leaf once), else None."""
        with self._lock:
            body = self._items.pop((key, version_id), None)
        if body is None or sha256 is None or hashlib.sha256(body).hexdigest() != sha256:
            return None
        return body

    def __len__(self) -> int:
        return len(self._items)
