"""A lease in working state, so that a job runs on one replica at a time.

``leases/<name>`` holds ``{"owner", "until"}``; acquiring or renewing is a
compare-and-swap, so two replicas can never both hold an unexpired lease. A holder
that dies simply stops renewing; another takes over after ``ttl`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable

from archiver.keyspace import lease_key
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore


class Lease:
    def __init__(
        self,
        state: StateStore,
        name: str,
        *,
        ttl: float = 30.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.key = lease_key(name)
        self.ttl = ttl
        self.owner = owner or secrets.token_hex(8)
        self.clock = clock

    def acquire(self) -> bool:
        """Take or renew the lease; True when we hold it afterwards."""
        now = self.clock()
        current = self.state.get(self.key)
        doc = json.dumps({"owner": self.owner, "until": now + self.ttl}).encode()
        try:
            if current is None:
                self.state.put(self.key, doc, if_absent=True)
                return True
            held = json.loads(current.value)
            if held["owner"] != self.owner and held["until"] > now:
                return False
            self.state.put(self.key, doc, if_match=current.token)
            return True
        except PreconditionFailed:
            return False

    def release(self) -> None:
        current = self.state.get(self.key)
        if current is not None and json.loads(current.value)["owner"] == self.owner:
            with contextlib.suppress(PreconditionFailed):
                self.state.delete(self.key, if_match=current.token)
