"""Bates numbers, stable per case, in working state.

``allocate(case_id, item_ids)`` returns a number for every item: the one it already has,
or a new one after the highest ever given in this case. Two allocations running at once
(two replicas, two threads) never give one number twice nor one item two numbers:

1. items already numbered are read from their buckets (``cases-bates/<case>/map/<bb>``,
   256 buckets by the first byte of SHA-256(item id): 100,000 items are ~400 per bucket,
   so no value grows with the case and each bucket is rewritten once per call);
2. the new items reserve a block ``[next, next + n)`` by compare-and-swap on
   ``cases-bates/<case>/head``: blocks never overlap, so no number is given twice;
3. each bucket is extended by compare-and-swap, adding only items still absent; an item
   another allocation numbered meanwhile keeps that number (insert-if-absent under CAS
   is what makes "one item, one number" hold).

The cost of that safety: an item numbered by a concurrent allocation leaves its reserved
number unused (a gap), as does a crash between steps 2 and 3. Numbers are never reused,
so a gap is harmless: Bates ranges stay increasing and unique.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from archiver.errors import Conflict, InvalidInput
from archiver.jobs.lease import Lease
from archiver.keyspace import bates_bucket_key, bates_head_key
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore

_CAS_TRIES = 200
_BUCKET_THREADS = 8  # bucket round trips in flight per call (I/O bound)
_LEASE_TTL_S = 120.0  # a call over 5,000 items takes seconds; a dead holder blocks this long
_LEASE_WAIT_S = 300.0
MAX_ITEM_ID = 1024


class BatesContention(PreconditionFailed):
    code = "bates_contention"


class BatesExhausted(Conflict):
    """The numbers asked for would pass the largest a label can show: refused before any
    is reserved, since reserved numbers stay with the case for good."""

    code = "bates_exhausted"


def bucket_of(item_id: str) -> str:
    return hashlib.sha256(item_id.encode()).hexdigest()[:2]


class BatesAllocator:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def allocate(self, case_id: str, item_ids: Iterable[str], *, start: int = 1,
                 highest: int | None = None) -> dict[str, int]:  # fmt: skip
        """Numbers for ``item_ids`` (new ones in the order given). ``start`` is the first
        number of a case that has none yet; later it is ignored (numbers are stable).
        ``highest``: the largest number a label can show (the padded width), else none.
        Raises InvalidInput ``bates_item_invalid`` for an empty or over-long item id and
        ``bates_start_invalid`` for a start below 1, and BatesExhausted when the new items
        would pass ``highest`` (nothing is reserved then: a number past it would make every
        later export of the case fail)."""
        if start < 1:
            raise InvalidInput("the first Bates number must be at least 1",
                             code="bates_start_invalid")  # fmt: skip
        wanted: dict[str, None] = {}
        for item in item_ids:
            if not item or len(item) > MAX_ITEM_ID:
                raise InvalidInput("a Bates item id must be 1 to 1024 characters",
                                 code="bates_item_invalid")  # fmt: skip
            wanted.setdefault(item, None)
        # One allocation per case at a time: two at once would each reserve a block and
        # could split a family (a record and its attachments, asked for together) across
        # both, and a family's numbers must be contiguous for as long as the case lives.
        # The compare-and-swaps below still keep numbers unique should a lease expire.
        lease = Lease(self.state, f"bates-{case_id}", ttl=_LEASE_TTL_S)
        deadline = time.monotonic() + _LEASE_WAIT_S
        while not lease.acquire():
            if time.monotonic() > deadline:
                raise BatesContention(f"case {case_id}: another allocation holds the case")
            time.sleep(0.05 + random.random() * 0.1)  # noqa: S311 -- jitter, not a secret
        try:
            return self._allocate(case_id, wanted, start, highest)
        finally:
            lease.release()

    def _allocate(self, case_id: str, wanted: dict[str, None], start: int,
                  highest: int | None) -> dict[str, int]:  # fmt: skip
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for item in wanted:
            by_bucket[bucket_of(item)].append(item)
        out: dict[str, int] = {}
        # Buckets are independent compare-and-swap objects: their round trips run in
        # parallel (a call over 5,000 items touches all 256). A bucket's map is dropped as
        # soon as its items are looked up, so memory holds a few buckets, not the case's
        # whole map (100,000 items are ~17 MB as Python dicts).
        def found(bucket: str) -> dict[str, int]:
            numbers = self._read_bucket(case_id, bucket)[0]
            return {i: numbers[i] for i in by_bucket[bucket] if i in numbers}

        with ThreadPoolExecutor(_BUCKET_THREADS) as pool:
            for numbered in pool.map(found, by_bucket):
                out.update(numbered)
            new = [i for i in wanted if i not in out]
            if new:
                first = self._reserve(case_id, len(new), start, highest)
                proposed = {item: first + n for n, item in enumerate(new)}
                grouped: dict[str, list[str]] = defaultdict(list)
                for item in new:
                    grouped[bucket_of(item)].append(item)

                def insert(bucket: str) -> dict[str, int]:
                    return self._insert(case_id, bucket, {i: proposed[i] for i in grouped[bucket]})

                for numbered in pool.map(insert, sorted(grouped)):
                    out.update(numbered)
        return {item: out[item] for item in wanted}

    def assigned(self, case_id: str) -> dict[str, int]:
        """Every item numbered in this case so far."""
        out: dict[str, int] = {}
        for n in range(256):
            out.update(self._read_bucket(case_id, f"{n:02x}")[0])
        return out

    def highest(self, case_id: str) -> int | None:
        """The highest number reserved so far (None before the first allocation)."""
        value = self.state.get(bates_head_key(case_id))
        return None if value is None else int(json.loads(value.value)["next"]) - 1

    # -- the two compare-and-swap steps ----------------------------------------------------
    def _read_bucket(self, case_id: str, bucket: str) -> tuple[dict[str, int], str | None]:
        value = self.state.get(bates_bucket_key(case_id, bucket))
        if value is None:
            return {}, None
        return {str(k): int(v) for k, v in json.loads(value.value).items()}, value.token

    def _reserve(self, case_id: str, count: int, start: int, highest: int | None) -> int:
        key = bates_head_key(case_id)
        for _ in range(_CAS_TRIES):
            value = self.state.get(key)
            first = start if value is None else int(json.loads(value.value)["next"])
            if highest is not None and first + count - 1 > highest:
                raise BatesExhausted(f"case {case_id}: {count} more Bates numbers from "
                                     f"{first} would pass {highest}",
                                     details={"first": first, "count": count,
                                              "highest": highest})  # fmt: skip
            body = json.dumps({"next": first + count}).encode()
            try:
                if value is None:
                    self.state.put(key, body, if_absent=True)
                else:
                    self.state.put(key, body, if_match=value.token)
                return first
            except PreconditionFailed:
                continue
        raise BatesContention(f"case {case_id}: too much contention on the Bates counter")

    def _insert(self, case_id: str, bucket: str, proposed: dict[str, int]) -> dict[str, int]:
        key = bates_bucket_key(case_id, bucket)
        for _ in range(_CAS_TRIES):
            numbers, token = self._read_bucket(case_id, bucket)
            merged = dict(numbers)
            for item, number in proposed.items():
                merged.setdefault(item, number)  # numbered meanwhile: that number stays
            body = json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()
            try:
                if token is None:
                    self.state.put(key, body, if_absent=True)
                else:
                    self.state.put(key, body, if_match=token)
                return {item: merged[item] for item in proposed}
            except PreconditionFailed:
                continue
        raise BatesContention(f"case {case_id}: too much contention on Bates bucket {bucket}")


def bates_label(prefix: str, number: int, width: int = 8) -> str:
    """``ACME00000042``: the prefix and the zero-padded number."""
    return f"{prefix}{number:0{width}d}"


def contiguous(numbers: Sequence[int]) -> bool:
    """Whether sorted ``numbers`` form one unbroken run (a family's BEGATTACH..ENDATTACH)."""
    ordered = sorted(numbers)
    return all(b == a + 1 for a, b in itertools.pairwise(ordered))
